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
  return {
    put: async (key, bytes) => {
      const full = resolveKey(key);
      await mkdir(path.dirname(full), { recursive: true });
      // Write then rename, so a reader never sees half a file.
      const temp = `${full}.${randomUUID()}.tmp`;
      await writeFile(temp, bytes);
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

export const taskImageKey = (taskId: string, index: number, format: string) =>
  `tasks/${taskId}/${index}.${format === "jpeg" ? "jpg" : format}`;

export const contentTypeOfKey = (key: string) =>
  key.endsWith(".jpg") ? "image/jpeg" : key.endsWith(".webp") ? "image/webp" : "image/png";
