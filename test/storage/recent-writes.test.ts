import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLocalStorage, isSourceImageKey, sourceImageKey, taskImageKey } from "../../apps/domain/storage/local-storage.ts";
import { withRecentWrites } from "../../apps/domain/storage/recent-writes.ts";

// The worker keeps the sources it stored for a short while (recent-writes.ts): its submission reads
// them from memory. Shown here by changing the file behind the store's back: a read from memory
// still answers what this process wrote.
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "kling-recent-writes-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});
const behindItsBack = (key: string, bytes: Buffer) => writeFile(path.join(dir, key), bytes);

describe("recently written sources kept in memory", () => {
  it("when a source was just stored, then its read answers the stored bytes from memory; a result's read goes to the store", async () => {
    const store = withRecentWrites(createLocalStorage(dir), { maxBytes: 1024 * 1024, maxAgeMs: 60_000, keys: isSourceImageKey });
    const [source, result] = [sourceImageKey(randomUUID(), "png"), taskImageKey(randomUUID(), 0, "png")];
    const [bytes, other] = [randomBytes(1000), randomBytes(1000)];
    await store.put(source, bytes);
    await store.put(result, bytes);
    await behindItsBack(source, other);
    await behindItsBack(result, other);
    expect((await store.read(source))?.equals(bytes)).toBe(true);
    expect((await store.read(result))?.equals(other)).toBe(true);
  });

  it("when a source is removed, or written again, then memory follows the store", async () => {
    const store = withRecentWrites(createLocalStorage(dir), { maxBytes: 1024 * 1024, maxAgeMs: 60_000, keys: isSourceImageKey });
    const key = sourceImageKey(randomUUID(), "png");
    await store.put(key, randomBytes(500));
    await store.remove(key);
    expect(await store.read(key)).toBeUndefined();
    const again = randomBytes(500);
    await store.put(key, randomBytes(500));
    await store.put(key, again);
    expect((await store.read(key))?.equals(again)).toBe(true);
  });

  it("when memory is over its bytes or an entry over its age, then the oldest go back to the store", async () => {
    const store = withRecentWrites(createLocalStorage(dir), { maxBytes: 2500, maxAgeMs: 60_000, keys: isSourceImageKey });
    const keys = [0, 1, 2].map(() => sourceImageKey(randomUUID(), "png"));
    for (const key of keys) await store.put(key, randomBytes(1000));
    const stored = randomBytes(10);
    for (const key of keys) await behindItsBack(key, stored);
    // The first went when the third came (3,000 bytes over 2,500); the other two are still kept.
    expect((await store.read(keys[0]!))?.equals(stored)).toBe(true);
    expect((await store.read(keys[1]!))?.equals(stored)).toBe(false);
    expect((await store.read(keys[2]!))?.equals(stored)).toBe(false);

    const aged = withRecentWrites(createLocalStorage(dir), { maxBytes: 2500, maxAgeMs: 0, keys: isSourceImageKey });
    await aged.put(keys[0]!, randomBytes(1000));
    await behindItsBack(keys[0]!, stored);
    expect((await aged.read(keys[0]!))?.equals(stored)).toBe(true);
  });
});
