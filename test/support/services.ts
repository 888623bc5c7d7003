import { Redis } from "ioredis";
import pg from "pg";

// A clear message beats a wall of connection errors when Postgres or Redis is not running.
export const ensureServicesAnswer = async (postgresServerUrl: string, redisUrl: string) => {
  const client = new pg.Client({ connectionString: `${postgresServerUrl}/postgres`, connectionTimeoutMillis: 3_000 });
  try {
    await client.connect();
    await client.query("select 1");
  } catch (error) {
    throw new Error(`Postgres does not answer at ${postgresServerUrl}: ${(error as Error).message} (see .ci/run for how to start it)`);
  } finally {
    await client.end().catch(() => undefined);
  }
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 3_000, retryStrategy: () => null });
  try {
    await redis.connect();
    await redis.ping();
  } catch (error) {
    throw new Error(`Redis does not answer at ${redisUrl}: ${(error as Error).message} (see .ci/run for how to start it)`);
  } finally {
    redis.disconnect();
  }
};
