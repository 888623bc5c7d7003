import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { buffer } from "node:stream/consumers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createObjectStorage, type StorageHandle } from "../../apps/domain/storage/object-storage.ts";
import { storageConfigFrom, storageEnv } from "../../apps/domain/storage/storage-config.ts";
import { parseEnv } from "../../apps/domain/config/parse-env.ts";
import { z } from "zod";
import { startS3Server } from "../support/s3-server.ts";

type Server = Awaited<ReturnType<typeof startS3Server>>;
let s3: Server;
let localDir: string;
const bucket = "store-contract";

const storageFor = async (env: Record<string, string>) => createObjectStorage(storageConfigFrom(parseEnv(z.object(storageEnv), env)));

beforeAll(async () => {
  s3 = await startS3Server([bucket]);
  localDir = await mkdtemp(path.join(tmpdir(), "kling-local-store-"));
});
afterAll(async () => {
  await s3?.stop();
  await rm(localDir, { recursive: true, force: true });
});

// The same contract for both stores: what the API and worker rely on.
const stores: [string, () => Promise<StorageHandle>][] = [
  ["local directory", () => storageFor({ STORAGE_DIR: localDir })],
  ["S3 (s3rver)", () => storageFor(s3.env(bucket))],
];

describe.each(stores)("object storage: %s", (_name, make) => {
  it("when a key was never written, then open and read answer undefined and remove succeeds", async () => {
    const store = await make();
    const key = `tasks/${randomUUID()}/0.png`;
    expect(await store.open(key)).toBeUndefined();
    expect(await store.read(key)).toBeUndefined();
    await expect(store.remove(key)).resolves.toBeUndefined();
    store.close();
  });

  it("when an object is written, then open streams exactly its bytes with its size, and read returns them", async () => {
    const store = await make();
    const key = `tasks/${randomUUID()}/1.jpg`;
    const bytes = randomBytes(300_000);
    await store.put(key, bytes);
    const opened = await store.open(key);
    expect(opened?.size).toBe(bytes.length);
    expect((await buffer(opened!.stream)).equals(bytes)).toBe(true);
    expect((await store.read(key))?.equals(bytes)).toBe(true);
    store.close();
  });

  it("when a key is written twice, then the second write replaces the first whole, and remove deletes it", async () => {
    const store = await make();
    const key = `sources/${randomUUID()}.png`;
    await store.put(key, Buffer.from("first version, longer than the second"));
    await store.put(key, Buffer.from("second"));
    expect((await store.read(key))?.toString()).toBe("second");
    expect((await store.open(key))?.size).toBe(6);
    await store.remove(key);
    expect(await store.read(key)).toBeUndefined();
    store.close();
  });

  it("when keys carry spaces, plus signs, percent signs, query and fragment characters or non-ASCII, then each round-trips as its own object", async () => {
    const store = await make();
    const base = `odd/${randomUUID()}`;
    const keys = [`${base}/a b.png`, `${base}/a+b.png`, `${base}/a%20b.png`, `${base}/a?b=c#d.png`, `${base}/ü-日本.png`, `${base}/a&b;c'd.png`];
    for (const [i, key] of keys.entries()) await store.put(key, Buffer.from(`object ${i}`));
    for (const [i, key] of keys.entries()) expect((await store.read(key))?.toString()).toBe(`object ${i}`);
    store.close();
  });

  it("when a key could escape the root or is ambiguous, then every operation refuses it before touching the store", async () => {
    const store = await make();
    const bad = ["", "../outside.png", "tasks/../../outside.png", "/etc/passwd", "tasks//x.png", "tasks/./x.png", "tasks/x/", "a\\..\\b", "a\u0000b", "x".repeat(1025)];
    for (const key of bad) {
      await expect(store.put(key, Buffer.from("x")), JSON.stringify(key)).rejects.toThrow(/storage key/);
      await expect(store.open(key)).rejects.toThrow(/storage key/);
      await expect(store.read(key)).rejects.toThrow(/storage key/);
      await expect(store.remove(key)).rejects.toThrow(/storage key/);
    }
    store.close();
  });
});

describe("object storage: S3 specifics", () => {
  it("when local storage refuses a bad key, then nothing was written outside its directory", async () => {
    const parent = path.dirname(localDir);
    const before = await readdir(parent);
    const store = await storageFor({ STORAGE_DIR: localDir });
    await expect(store.put("../escaped.png", Buffer.from("x"))).rejects.toThrow();
    expect(await readdir(parent)).toEqual(before);
  });

  it("when two installations share a bucket with different S3_PREFIX, then neither sees the other's objects", async () => {
    const a = await storageFor(s3.env(bucket, { S3_PREFIX: "install-a/" }));
    const b = await storageFor(s3.env(bucket, { S3_PREFIX: "install-b/" }));
    const key = `tasks/${randomUUID()}/0.png`;
    await a.put(key, Buffer.from("from a"));
    expect(await b.read(key)).toBeUndefined();
    expect((await a.read(key))?.toString()).toBe("from a");
    a.close();
    b.close();
  });

  // s3rver does not verify SigV4 signatures, but it does refuse an unknown access key.
  it("when the credentials are refused, then reads fail loudly instead of looking like a missing image", async () => {
    const store = await storageFor(s3.env(bucket, { S3_ACCESS_KEY_ID: "UNKNOWNKEY", S3_SECRET_ACCESS_KEY: "not-the-secret" }));
    await expect(store.read(`tasks/${randomUUID()}/0.png`)).rejects.toThrow(/access key/i);
    await expect(store.put(`tasks/${randomUUID()}/0.png`, Buffer.from("x"))).rejects.toThrow(/access key/i);
    store.close();
  });

  it("when the bucket does not exist, then writes and reads fail loudly", async () => {
    const store = await storageFor(s3.env("no-such-bucket"));
    await expect(store.put(`tasks/${randomUUID()}/0.png`, Buffer.from("x"))).rejects.toThrow(/bucket/i);
    await expect(store.read(`tasks/${randomUUID()}/0.png`)).rejects.toThrow(/bucket/i);
    store.close();
  });

  it("when the endpoint does not answer, then the operation fails within its timeout", async () => {
    const store = await storageFor({ ...s3.env(bucket), S3_ENDPOINT: "http://127.0.0.1:9", S3_TIMEOUT_MS: "2000" });
    await expect(store.put(`tasks/${randomUUID()}/0.png`, Buffer.from("x"))).rejects.toThrow();
    store.close();
  });
});
