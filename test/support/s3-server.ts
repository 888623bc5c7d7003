import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import S3rver from "s3rver";

// s3rver's fixed credentials: it checks request signatures against them.
export const s3rverCredentials = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };

// A real S3-compatible server (s3rver, over HTTP on a free loopback port) with a fresh data directory.
export const startS3Server = async (buckets: string[]) => {
  const directory = await mkdtemp(path.join(tmpdir(), "kling-s3rver-"));
  const server = new S3rver({
    address: "127.0.0.1",
    port: 0,
    silent: true,
    directory,
    configureBuckets: buckets.map((name) => ({ name })),
  });
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    directory,
    // The env that points the API and worker at it.
    env: (bucket: string, extra: Record<string, string> = {}): Record<string, string> => ({
      S3_BUCKET: bucket,
      S3_ENDPOINT: endpoint,
      S3_REGION: "us-east-1",
      S3_FORCE_PATH_STYLE: "true",
      S3_ACCESS_KEY_ID: s3rverCredentials.accessKeyId,
      S3_SECRET_ACCESS_KEY: s3rverCredentials.secretAccessKey,
      ...extra,
    }),
    stop: async () => {
      await server.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
};
