import { randomUUID } from "node:crypto";
import { readdir } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, waitForTask } from "../support/http.ts";
import { makeImage } from "../support/images.ts";
import { startStack, type Stack } from "../support/stack.ts";

// Retention through the running system: the worker's sweep deletes what is past its time, and the
// API then answers for a pruned task exactly as for one that never existed (404, native and
// drop-in alike; docs/retention.md).

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ workerEnv: { RETENTION_EVERY_MS: "200", TASK_RETENTION_DAYS: "90", IMAGE_RETENTION_DAYS: "30" } });
});
afterAll(() => stack?.stop());

const DAY_MS = 86_400_000;
const backdate = (taskIds: string[], days: number) =>
  stack.db.updateTable("task").set({ finishedAt: new Date(Date.now() - days * DAY_MS) }).where("id", "in", taskIds).execute();

// Polls a condition the sweep makes true; the sweep runs every 200 ms here.
const eventually = async <T>(read: () => Promise<T>, done: (value: T) => boolean, what: string, timeoutMs = 15_000): Promise<T> => {
  const deadline = Date.now() + timeoutMs;
  let last = await read();
  while (!done(last)) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    last = await read();
  }
  return last;
};

const storedFiles = async () => (await readdir(stack.env.storageDir, { recursive: true })).filter((f) => f.endsWith(".png") || f.endsWith(".jpg"));

describe("retention in the running system", () => {
  it("when a finished task passes the image retention and then the task retention, then first its files go and then it answers 404 on the native and the drop-in routes, like an unknown task", async () => {
    const { key } = await stack.newAccount();
    const image = (await makeImage(400, 300)).toString("base64");
    const native = await call(stack.api.url, "POST", "/v1/tasks", { key, body: { image, up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1 } });
    expect(native.status).toBe(202);
    const dropin = await call(stack.api.url, "POST", "/kling/v1/images/editing/expand", { key, body: { image, up_expansion_ratio: 0.1, bottom_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1 } });
    expect(dropin.status).toBe(200);
    const ids = [native.body.id as string, dropin.body.data.task_id as string];
    const done = await waitForTask(stack.api.url, key, ids[0]!, ["succeeded", "failed"]);
    expect(done.status).toBe("succeeded");
    await waitForTask(stack.api.url, key, ids[1]!, ["succeeded", "failed"]);
    const link: string = done.images[0].url;
    expect((await fetch(link)).status).toBe(200);
    const filesOf = async () => (await storedFiles()).filter((f) => ids.some((id) => f.includes(id)));
    // Each: its uploaded source and one result image.
    expect(await filesOf()).toHaveLength(4);

    // Past the image retention: the task stays, its files go.
    await backdate(ids, 31);
    const withoutImages = await eventually(() => call(stack.api.url, "GET", `/v1/tasks/${ids[0]}`, { key }), (a) => a.body.images?.length === 0, "image deletion");
    expect(withoutImages.status).toBe(200);
    expect(withoutImages.body.status).toBe("succeeded");
    expect(withoutImages.body.status_message).toMatch(/images were deleted on \d{4}-\d{2}-\d{2} \(image retention\)/);
    expect((await fetch(link)).status).toBe(404);
    await eventually(filesOf, (files) => files.length === 0, "file deletion");
    const dropinAfterImages = await call(stack.api.url, "GET", `/kling/v1/images/editing/expand/${ids[1]}`, { key });
    expect(dropinAfterImages.body.data.task_status).toBe("succeed");
    expect(dropinAfterImages.body.data.task_result.images).toEqual([]);
    expect(dropinAfterImages.body.data.task_status_msg).toMatch(/images were deleted/);

    // Past the task retention: gone, and indistinguishable from a task that never existed.
    await backdate(ids, 91);
    await eventually(() => call(stack.api.url, "GET", `/v1/tasks/${ids[0]}`, { key }), (a) => a.status === 404, "native task deletion");
    await eventually(() => stack.db.selectFrom("task").select("id").where("id", "in", ids).execute(), (rows) => rows.length === 0, "task rows deletion");
    const unknownId = randomUUID();
    const [nativeGone, nativeUnknown] = await Promise.all([
      call(stack.api.url, "GET", `/v1/tasks/${ids[0]}`, { key }),
      call(stack.api.url, "GET", `/v1/tasks/${unknownId}`, { key }),
    ]);
    expect(nativeGone.status).toBe(404);
    expect(nativeGone.body.title ?? nativeGone.body.code).toEqual(nativeUnknown.body.title ?? nativeUnknown.body.code);
    const [dropinGone, dropinUnknown] = await Promise.all([
      call(stack.api.url, "GET", `/kling/v1/images/editing/expand/${ids[1]}`, { key }),
      call(stack.api.url, "GET", `/kling/v1/images/editing/expand/${unknownId}`, { key }),
    ]);
    expect(dropinGone.status).toBe(404);
    expect(dropinGone.status).toBe(dropinUnknown.status);
    expect(dropinGone.body.code).toBe(dropinUnknown.body.code);
    expect(await stack.db.selectFrom("taskEvent").select("id").where("taskId", "in", ids).execute()).toEqual([]);
  });
});
