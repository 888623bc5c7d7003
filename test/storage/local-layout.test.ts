import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLocalStorage, taskImageKey } from "../../apps/domain/storage/local-storage.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "kling-local-layout-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("local storage layout", () => {
  it("when many tasks' results are stored and removed, then they share a few directories and leave none of their own behind", async () => {
    const store = createLocalStorage(dir);
    const keys = Array.from({ length: 40 }, () => taskImageKey(randomUUID(), 0, "png"));
    for (const key of keys) await store.put(key, randomBytes(100));
    const shards = await readdir(path.join(dir, "tasks"));
    // 40 ids over 256 shards of two hex characters: never 40 directories of a task each.
    expect(shards.length).toBeLessThanOrEqual(40);
    for (const shard of shards) expect(shard).toMatch(/^[0-9a-f]{2}$/);
    for (const key of keys) await store.remove(key);
    for (const shard of shards) expect(await readdir(path.join(dir, "tasks", shard))).toEqual([]);
  });

  it("when a directory it made was removed behind its back, then the next put makes it again", async () => {
    const store = createLocalStorage(dir);
    const first = taskImageKey(`ab${randomUUID().slice(2)}`, 0, "png");
    await store.put(first, randomBytes(10));
    await rm(path.join(dir, "tasks", "ab"), { recursive: true, force: true });
    const second = taskImageKey(`ab${randomUUID().slice(2)}`, 0, "png");
    const bytes = randomBytes(10);
    await store.put(second, bytes);
    expect((await store.read(second))?.equals(bytes)).toBe(true);
  });
});
