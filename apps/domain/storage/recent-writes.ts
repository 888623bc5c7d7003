import type { ObjectStorage } from "./local-storage.ts";

// A checked source is stored by its check and read back by its submission a moment later, most
// often in the same worker process: the bytes it wrote are kept here for a short while, bounded in
// bytes, so that read is not a file (or S3) round trip. Only what this process wrote or read is
// answered from memory, and a removal drops it; a key is written once per check of its task, and a
// re-check (which may write other bytes) replaces it here as in the store.
export const withRecentWrites = <S extends ObjectStorage>(store: S, options: { maxBytes: number; maxAgeMs: number; keys: (key: string) => boolean }): S => {
  // Insertion order is age order: the oldest go first.
  const kept = new Map<string, { bytes: Buffer; at: number }>();
  let keptBytes = 0;
  const drop = (key: string) => {
    const entry = kept.get(key);
    if (!entry) return;
    kept.delete(key);
    keptBytes -= entry.bytes.length;
  };
  const keep = (key: string, bytes: Buffer) => {
    drop(key);
    if (bytes.length > options.maxBytes) return;
    const now = Date.now();
    for (const [oldest, entry] of kept) {
      if (keptBytes + bytes.length <= options.maxBytes && now - entry.at < options.maxAgeMs) break;
      drop(oldest);
    }
    kept.set(key, { bytes, at: now });
    keptBytes += bytes.length;
  };
  return {
    ...store,
    put: async (key, bytes) => {
      // Dropped first: while the store writes, a read must not be answered with the bytes it replaces.
      drop(key);
      await store.put(key, bytes);
      if (options.keys(key)) keep(key, bytes);
    },
    read: async (key) => {
      const entry = kept.get(key);
      if (entry && Date.now() - entry.at < options.maxAgeMs) return entry.bytes;
      return store.read(key);
    },
    remove: async (key) => {
      drop(key);
      await store.remove(key);
    },
  };
};
