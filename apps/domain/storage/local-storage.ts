import { randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import { assertStorageKey } from "./storage-key.ts";

export type ObjectStorage = {
  put(key: string, bytes: Buffer): Promise<void>;
  open(key: string): Promise<{ stream: Readable; size: number } | undefined>;
  read(key: string): Promise<Buffer | undefined>;
  remove(key: string): Promise<void>;
};

// Keys are ours (task id / index), never the caller's; the resolve check is a second guard anyway.
export const createLocalStorage = (rootDir: string): ObjectStorage => {
  const root = path.resolve(rootDir);
  const resolveKey = (key: string) => {
    assertStorageKey(key);
    const full = path.resolve(root, key);
    if (!full.startsWith(root + path.sep)) throw new Error(`storage key escapes the root: ${key}`);
    return full;
  };
  // Directories this process made or found: a put into one skips its mkdir (a few hundred at most,
  // keys being sharded: taskImageKey). One removed behind our back is made again when a write
  // into it fails for want of it.
  const made = new Set<string>();
  const MADE_KEPT = 4_096;
  const ensureDir = async (dir: string) => {
    if (made.has(dir)) return;
    await mkdir(dir, { recursive: true });
    if (made.size >= MADE_KEPT) made.clear();
    made.add(dir);
  };
  return {
    put: async (key, bytes) => {
      const full = resolveKey(key);
      const dir = path.dirname(full);
      await ensureDir(dir);
      // Write then rename, so a reader never sees half a file.
      const temp = `${full}.${randomUUID()}.tmp`;
      try {
        await writeFile(temp, bytes);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ENOENT" || !made.delete(dir)) throw error;
        await ensureDir(dir);
        await writeFile(temp, bytes);
      }
      await rename(temp, full);
    },
    open: async (key) => {
      const full = resolveKey(key);
      try {
        const info = await stat(full);
        return { stream: createReadStream(full), size: info.size };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
        throw error;
      }
    },
    read: async (key) => {
      try {
        return await readFile(resolveKey(key));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
        throw error;
      }
    },
    remove: async (key) => {
      await rm(resolveKey(key), { force: true });
    },
  };
};

const SOURCE_IMAGE_DIR = "sources/";
export const sourceImageKey = (taskId: string, format: string) => `${SOURCE_IMAGE_DIR}${taskId}.${format === "jpeg" ? "jpg" : format}`;
export const isSourceImageKey = (key: string) => key.startsWith(SOURCE_IMAGE_DIR);

// Sharded by the id's first two characters, not a directory per task: a new directory is an inode
// made per task on a local disk (a measurable share of the worker's CPU in ext4's inode allocation),
// and retention deletes files by key, which left every task's empty directory behind. Keys already
// stored (tasks/<id>/<index>.<ext>) stay valid: the rows hold them.
export const taskImageKey = (taskId: string, index: number, format: string) =>
  `tasks/${taskId.slice(0, 2)}/${taskId}-${index}.${format === "jpeg" ? "jpg" : format}`;

export const contentTypeOfKey = (key: string) =>
  key.endsWith(".jpg") ? "image/jpeg" : key.endsWith(".webp") ? "image/webp" : "image/png";
