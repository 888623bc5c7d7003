import { randomUUID } from "node:crypto";
import { closeSync, mkdirSync, openSync, readdirSync, readSync, unlinkSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { BatchBodySource } from "../../domain/batch/json-batch-body.ts";

// A JSON batch body kept on disk while it is read, not in memory: held as the socket's chunks it
// was the process's largest allocation (a 28 MB batch held 28 MB from its first byte to its answer,
// and with the intake's own garbage raised the API by 2-4x the body). On disk the process holds one
// socket chunk at a time, whatever the body's size; the passes over it read it back item by item.
//
// The file is unlinked as soon as it is opened: only the open descriptor keeps it, so it is gone
// on every path once that is closed (an answer, an error, a client that went away), and even if
// the process is killed. The directory is swept at API start (sweepBodySpool) for what a crash
// between the open and the unlink could have left.
export const bodySpoolDir = () => path.join(tmpdir(), "kling-expand-json-bodies");

export type SpooledBody = BatchBodySource & {
  write: (chunk: Buffer) => void;
  close: () => void;
  readonly closed: boolean;
};

// Synchronous reads and writes: a chunk goes to the page cache in microseconds (a 64 KB socket
// chunk), the passes read what was written a moment before, and the scan and the item reads stay
// synchronous as they were over memory. Named `<pid>-<uuid>` so that the sweep knows its owner.
export const openBodySpool = (dir = bodySpoolDir()): SpooledBody => {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, `${process.pid}-${randomUUID()}.json`);
  const fd = openSync(file, "wx+", 0o600);
  try {
    unlinkSync(file);
  } catch (error) {
    closeSync(fd);
    throw error;
  }
  let length = 0;
  let closed = false;
  return {
    get length() {
      return length;
    },
    get closed() {
      return closed;
    },
    write: (chunk) => {
      for (let done = 0; done < chunk.length; ) done += writeSync(fd, chunk, done, chunk.length - done, length + done);
      length += chunk.length;
    },
    read: (position, size) => {
      const bytes = Buffer.allocUnsafe(size);
      for (let got = 0; got < size; ) {
        const n = readSync(fd, bytes, got, size - got, position + got);
        if (n === 0) throw new Error(`spooled body ends at ${position + got}, before ${position + size}`);
        got += n;
      }
      return bytes;
    },
    close: () => {
      if (closed) return;
      closed = true;
      closeSync(fd);
    },
  };
};

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
};

// Leftovers of processes that are gone (or of an earlier life of this pid, as in a container that
// restarts with the same one). Another live API's files are left alone: it may be between the open
// and the unlink. Returns how many were removed.
export const sweepBodySpool = (dir = bodySpoolDir()): number => {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const name of names) {
    const pid = Number(/^(\d+)-/.exec(name)?.[1]);
    if (!Number.isInteger(pid) || (pid !== process.pid && isAlive(pid))) continue;
    try {
      unlinkSync(path.join(dir, name));
      removed++;
    } catch {
      // removed meanwhile
    }
  }
  return removed;
};
