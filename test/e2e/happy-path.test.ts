import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFileServer } from "../support/file-server.ts";
import { call, waitForTask } from "../support/http.ts";
import { imageSize, makeImage } from "../support/images.ts";
import { startStack, type Stack } from "../support/stack.ts";

let stack: Stack;
let files: Awaited<ReturnType<typeof startFileServer>>;

beforeAll(async () => {
  stack = await startStack();
  files = await startFileServer({ "/photo.jpg": { body: await makeImage(600, 400, "jpeg"), contentType: "image/jpeg" } });
});
afterAll(async () => {
  await files?.stop();
  await stack?.stop();
});

describe("the spine, end to end", () => {
  it("when a CometAPI-style client submits through the drop-in route, then it polls the provider's shape to `succeed` and downloads an image of the expanded size without auth", async () => {
    const { key } = await stack.newAccount();
    const image = (await makeImage(400, 300)).toString("base64");
    const created = await call(stack.api.url, "POST", "/kling/v1/images/editing/expand", {
      key,
      body: {
        image,
        up_expansion_ratio: 0.1,
        bottom_expansion_ratio: 0.1,
        left_expansion_ratio: 0.25,
        right_expansion_ratio: 0.25,
        n: "2",
        external_task_id: "order-1",
      },
    });
    expect(created.status).toBe(200);
    expect(created.body).toMatchObject({
      code: 0,
      message: "SUCCEED",
      data: { task_status: "submitted", task_info: { external_task_id: "order-1" } },
    });
    expect(typeof created.body.request_id).toBe("string");
    const taskId: string = created.body.data.task_id;

    await waitForTask(stack.api.url, key, taskId, ["succeeded", "failed"]);
    const got = await call(stack.api.url, "GET", `/kling/v1/images/editing/expand/${taskId}`, { key });
    expect(got.status).toBe(200);
    expect(got.body.code).toBe(0);
    expect(got.body.data).toMatchObject({ task_id: taskId, task_status: "succeed", task_status_msg: "", final_unit_deduction: "2" });
    expect(got.body.data.task_result.images).toHaveLength(2);

    for (const [i, image] of got.body.data.task_result.images.entries()) {
      expect(image.index).toBe(i);
      const download = await fetch(image.url); // no Authorization header, as with the provider's URLs
      expect(download.status).toBe(200);
      expect(await imageSize(Buffer.from(await download.arrayBuffer()))).toMatchObject({ width: 600, height: 360 });
    }

    // The same task by the caller's own id, as Kling allows.
    const byExternal = await call(stack.api.url, "GET", "/kling/v1/images/editing/expand/order-1", { key });
    expect(byExternal.body.data.task_id).toBe(taskId);
  });

  it("when a native client submits a URL image, then the task succeeds with stored, checked images and a full history", async () => {
    const { key } = await stack.newAccount();
    const created = await call(stack.api.url, "POST", "/v1/tasks", {
      key,
      body: {
        image: files.url("/photo.jpg"),
        up_expansion_ratio: 0.5,
        down_expansion_ratio: 0.5,
        left_expansion_ratio: 0,
        right_expansion_ratio: 0,
        prompt: "a wider sky",
      },
    });
    expect(created.status).toBe(202);
    expect(created.headers.get("location")).toBe(`/v1/tasks/${created.body.id}`);
    expect(created.body).toMatchObject({ status: "queued", external_task_id: null });

    const done = await waitForTask(stack.api.url, key, created.body.id, ["succeeded", "failed"]);
    expect(done.status).toBe("succeeded");
    expect(done.provider).toMatchObject({ name: "simulator", status: "succeed" });
    expect(done.request.source).toEqual({ width: 600, height: 400 });
    expect(done.images).toHaveLength(1);
    expect(done.images[0]).toMatchObject({ index: 0, width: 600, height: 800 });
    expect(done.images[0].sha256).toMatch(/^[0-9a-f]{64}$/);

    const stored = await fetch(new URL(`/v1/tasks/${done.id}/images/0`, stack.api.url), { headers: { authorization: `Bearer ${key}` } });
    expect(stored.status).toBe(200);
    expect(await imageSize(Buffer.from(await stored.arrayBuffer()))).toMatchObject({ width: 600, height: 800 });

    const events = await call(stack.api.url, "GET", `/v1/tasks/${done.id}/events`, { key });
    const path = events.body.data.map((e: { to: string }) => e.to);
    expect(path[0]).toBe("queued");
    expect(path).toContain("submitting");
    expect(path).toContain("archiving");
    expect(path.at(-1)).toBe("succeeded");
    // Only ever forward.
    const rank = ["queued", "submitting", "submitted", "processing", "archiving", "succeeded"];
    expect(path.map((s: string) => rank.indexOf(s))).toEqual([...path.map((s: string) => rank.indexOf(s))].sort((a, b) => a - b));

    // Exactly one provider task for our task.
    const simTasks = await call(stack.simulator.url, "GET", "/_sim/tasks");
    const ours = (simTasks.body.tasks ?? simTasks.body).filter((t: { external_task_id: string }) => t.external_task_id === done.id);
    expect(ours).toHaveLength(1);
  });

  it("when tasks are listed, then filters and cursor pagination return each task once", async () => {
    const { key } = await stack.newAccount();
    const image = (await makeImage(320, 320)).toString("base64");
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await call(stack.api.url, "POST", "/v1/tasks", {
        key,
        body: { image, up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1, external_task_id: `list-${i}` },
      });
      expect(r.status).toBe(202);
      ids.push(r.body.id);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: any = await call(stack.api.url, "GET", `/v1/tasks?limit=2${cursor ? `&cursor=${cursor}` : ""}`, { key });
      expect(page.status).toBe(200);
      seen.push(...page.body.data.map((t: { id: string }) => t.id));
      cursor = page.body.next_cursor;
    } while (cursor);
    expect(seen).toEqual([...ids].reverse());

    const one = await call(stack.api.url, "GET", "/v1/tasks?external_task_id=list-3", { key });
    expect(one.body.data.map((t: { id: string }) => t.id)).toEqual([ids[3]]);
    const bad = await call(stack.api.url, "GET", "/v1/tasks?status=done", { key });
    expect(bad.status).toBe(400);
    expect(bad.body.errors[0].field).toBe("status");
  });
});
