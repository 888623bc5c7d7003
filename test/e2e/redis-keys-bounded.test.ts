import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { settle, startFaultStack, submitMany } from "../support/fault-kit.ts";
import { startFileServer } from "../support/file-server.ts";
import { makeImage } from "../support/images.ts";
import type { Stack } from "../support/stack.ts";

// Redis must not grow with the tasks that passed (issue 15): a finished task leaves nothing in
// Redis but the few finished jobs BullMQ keeps per queue for the queue board (QUEUE_KEEP_COMPLETED).
// Before, every task left its three finished jobs (source, submit, archive) up to 1,000 per queue,
// which the soak saw as ~3 keys per task.

const KEEP = 2;
const TASKS = 7;

let stack: Stack;
let files: Awaited<ReturnType<typeof startFileServer>>;
let redis: Redis;

beforeAll(async () => {
  files = await startFileServer({ "/photo.png": { body: await makeImage(400, 300) } });
  stack = await startFaultStack({ capacity: 4, env: { QUEUE_KEEP_COMPLETED: String(KEEP) } });
  redis = new Redis(stack.env.redisUrl);
});
afterAll(async () => {
  redis?.disconnect();
  await stack?.stop();
  await files?.stop();
});

const keysUnder = async (pattern: string) => {
  const found: string[] = [];
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1_000);
    found.push(...keys);
    cursor = next;
  } while (cursor !== "0");
  return found;
};

describe("Redis keys after tasks end", () => {
  it(`when ${TASKS} tasks with URL images have run through every stage, then Redis holds no key of theirs beyond the ${KEEP} finished jobs kept per queue`, async () => {
    const { key } = await stack.newAccount();
    const tasks = await submitMany(stack, key, TASKS, () => ({ image: files.url("/photo.png") }));
    const ended = await settle(stack, tasks, 60_000);
    expect(ended.map((t) => t.status)).toEqual(tasks.map(() => "succeeded"));

    const all = await keysUnder(`${stack.env.queuePrefix}:*`);
    const ids = new Set(tasks.map((t) => t.id));
    const mentioning = all.filter((k) => [...ids].some((id) => k.includes(id)));
    const perQueue = (queue: string) => mentioning.filter((k) => k.startsWith(`${stack.env.queuePrefix}:{${queue}}:`));
    for (const queue of ["source", "submit", "archive"]) {
      // Only job hashes are left (no lock, no log, no marker of a task's own).
      expect(perQueue(queue).every((k) => /:[0-9a-f-]{36}$/.test(k)), perQueue(queue).join(", ")).toBe(true);
      expect(perQueue(queue).length, `${queue}: ${perQueue(queue).join(", ")}`).toBeLessThanOrEqual(KEEP);
    }
    expect(mentioning.length, mentioning.join(", ")).toBeLessThanOrEqual(3 * KEEP);
  }, 90_000);
});
