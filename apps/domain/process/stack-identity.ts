import { createHash } from "node:crypto";
import { hostname } from "node:os";
import { createCheckRedis, type RedisTarget } from "../queues/redis-connection.ts";
import { ConfigError } from "../config/parse-env.ts";
import type { Logger } from "../logging/logger.ts";
import type { ProviderRoute } from "../provider/provider-routes.schema.ts";

// One QUEUE_PREFIX is one stack: its workers take whatever job is queued under it. Two stacks
// pointed at the same Redis and prefix with different provider configurations (a simulator here,
// Kling there) would take each other's jobs and send them to the wrong provider, silently. So each
// live process says, under the prefix, which provider configuration it runs with, and a process
// that finds a live one of its kind with another configuration refuses to start unless
// QUEUE_PREFIX_SHARED=true.
//
// What is stored: route names, kinds and base URLs (no key, no secret), the host and the app, in
// one hash `<prefix>:stack-identity`, a field per app kind and configuration, each with its own
// expiry time that live processes push forward.
const REFRESH_MS = 10_000;
const TTL_MS = 30_000;
const CONNECT_WAIT_MS = 5_000;

type Entry = { config: string; app: string; host: string; pid: number; expiresAt: number };

// Only what decides where a job goes; secrets never enter it.
export const providerConfigSummary = (routes: ProviderRoute[]) =>
  routes
    .map((r) => `${r.name}: ${r.kind} at ${r.baseUrl}`)
    .sort()
    .join("; ");

const keyOf = (prefix: string) => `${prefix}:stack-identity`;

export type StackIdentity = { stop: () => Promise<void> };

// Workers are compared with workers, APIs with APIs: an API deployed without provider variables
// beside workers that have them is one stack, not two.
export const claimQueuePrefix = async (options: {
  redis: RedisTarget;
  prefix: string;
  routes: ProviderRoute[];
  app: "api" | "worker";
  shared: boolean;
  logger: Logger;
}): Promise<StackIdentity> => {
  const { prefix, app, logger } = options;
  const config = providerConfigSummary(options.routes);
  const field = `${app}:${createHash("sha256").update(config).digest("hex").slice(0, 16)}`;
  // A connection of its own: the check runs before the app's connections exist, and a refusal
  // leaves nothing else to close.
  const redis = createCheckRedis(options.redis);
  let warned = 0;
  redis.on("error", () => undefined);

  const others = async () => {
    const now = Date.now();
    const stored = await redis.hgetall(keyOf(prefix));
    const live: Entry[] = [];
    const expired: string[] = [];
    for (const [name, value] of Object.entries(stored)) {
      let entry: Entry | undefined;
      try {
        entry = JSON.parse(value) as Entry;
      } catch {
        entry = undefined;
      }
      if (!entry || entry.expiresAt < now) expired.push(name);
      else if (name !== field && name.startsWith(`${app}:`)) live.push(entry);
    }
    if (expired.length > 0) await redis.hdel(keyOf(prefix), ...expired);
    return live;
  };
  const register = async () => {
    const entry: Entry = { config, app, host: hostname(), pid: process.pid, expiresAt: Date.now() + TTL_MS };
    await redis.multi().hset(keyOf(prefix), field, JSON.stringify(entry)).pexpire(keyOf(prefix), TTL_MS).exec();
  };
  const conflictText = (live: Entry[]) =>
    `QUEUE_PREFIX '${prefix}' is in use by another stack with another provider configuration: ` +
    `${live.map((e) => `${e.app} pid ${e.pid} on ${e.host} runs with [${e.config}]`).join(", ")}; ` +
    `this ${app} runs with [${config}]. Sharing a prefix makes the stacks take each other's jobs. ` +
    `Give this stack its own QUEUE_PREFIX (and DATABASE_URL), or set QUEUE_PREFIX_SHARED=true if they are meant to share ` +
    `(a stopped process's entry lapses within ${TTL_MS / 1000} s).`;

  const connected = await Promise.race([
    redis.connect().then(
      () => true,
      () => false,
    ),
    new Promise<false>((resolve) => setTimeout(() => resolve(false), CONNECT_WAIT_MS).unref()),
  ]);
  if (connected) {
    const live = await others();
    if (live.length > 0 && !options.shared) {
      redis.disconnect();
      throw new ConfigError([conflictText(live)]);
    }
    if (live.length > 0) logger.warn({ prefix, others: live }, `QUEUE_PREFIX_SHARED=true: ${conflictText(live)}`);
    await register();
  } else {
    logger.warn({ prefix }, "Redis not reachable at start: the queue prefix's other users are checked once it is");
  }

  // Pushes this process's expiry forward; a conflict that appears later (Redis was down at start,
  // or emptied) cannot stop a running process, so it is logged loudly, at most once a minute.
  const timer = setInterval(() => {
    void (async () => {
      const live = await others();
      if (live.length > 0 && !options.shared && Date.now() - warned > 60_000) {
        warned = Date.now();
        logger.error({ prefix, others: live }, conflictText(live));
      }
      await register();
    })().catch(() => undefined);
  }, REFRESH_MS);
  timer.unref();

  return {
    // Its field goes with it; the stack's other processes put theirs back within REFRESH_MS.
    stop: async () => {
      clearInterval(timer);
      if (redis.status === "ready") await redis.hdel(keyOf(prefix), field).catch(() => undefined);
      redis.disconnect();
    },
  };
};
