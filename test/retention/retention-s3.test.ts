import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createS3Storage } from "../../apps/domain/storage/s3-storage.ts";
import { eventually } from "../support/fault-kit.ts";
import { startFileServer } from "../support/file-server.ts";
import { call, waitForTask } from "../support/http.ts";
import { makeImage } from "../support/images.ts";
import { s3rverCredentials, startS3Server } from "../support/s3-server.ts";
import { startStack, type Stack } from "../support/stack.ts";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.ts";

// Image retention on S3-compatible storage (s3rver over HTTP), through the running system: the
// API and the worker store sources and results in the bucket, the worker's sweep runs retention
// every 200 ms, and a task is made old by moving its finished_at back in this test's own database.
// IMAGE_RETENTION_BY=sweep (the default) deletes the objects; bucket-rule leaves them to the
// bucket's lifecycle rule. Either way the task stays and says its images were deleted
// (docs/retention.md). The app reaches the bucket through a TCP proxy, so a test can take the
// bucket away from the app while this test still reads it directly.

const bucket = "kling-retention";
const DAY_MS = 86_400_000;
let s3: Awaited<ReturnType<typeof startS3Server>>;
let proxy: TcpProxy;
let files: Awaited<ReturnType<typeof startFileServer>>;

beforeAll(async () => {
  s3 = await startS3Server([bucket]);
  const { port } = new URL(s3.endpoint);
  proxy = await startTcpProxy({ host: "127.0.0.1", port: Number(port) });
  files = await startFileServer({ "/photo.jpg": { body: await makeImage(500, 400, "jpeg"), contentType: "image/jpeg" } });
});
afterAll(async () => {
  await files?.stop();
  await proxy?.stop();
  await s3?.stop();
});

// A stack on the bucket (under its own prefix) whose worker runs retention every 200 ms, and an
// operator's view of the same bucket that does not go through the proxy.
const startS3Stack = async (prefix: string, retention: Record<string, string>) => {
  const s3Env = s3.env(bucket, { S3_PREFIX: prefix, S3_ENDPOINT: `http://127.0.0.1:${proxy.port}`, S3_TIMEOUT_MS: "5000" });
  const stack = await startStack({
    apiEnv: s3Env,
    workerEnv: { ...s3Env, RETENTION_EVERY_MS: "200", TASK_RETENTION_DAYS: "90", IMAGE_RETENTION_DAYS: "30", ...retention },
  });
  const view = createS3Storage({ bucket, prefix, region: "us-east-1", endpoint: s3.endpoint, forcePathStyle: true, credentials: s3rverCredentials, timeoutMs: 5_000 });
  return { stack, view };
};

type StoredTask = { id: string; keys: string[]; link: string };

const ratios = { up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1 };

// One finished task with its stored objects: "inline" uploads the source at intake, "url" has the
// worker download it (and store what it downloaded).
const finishedTask = async (stack: Stack, key: string, source: "inline" | "url"): Promise<StoredTask> => {
  const image = source === "inline" ? (await makeImage(400, 300)).toString("base64") : files.url("/photo.jpg");
  const created = await call(stack.api.url, "POST", "/v1/tasks", { key, body: { image, ...ratios } });
  expect(created.status).toBe(202);
  const done = await waitForTask(stack.api.url, key, created.body.id, ["succeeded", "failed"]);
  expect(done.status).toBe("succeeded");
  return { id: done.id, keys: await storedKeys(stack, done.id), link: done.images[0].url };
};

// The object keys the rows name for a task: its stored source, then its results.
const storedKeys = async (stack: Stack, taskId: string) => {
  const task = await stack.db.selectFrom("task").select("sourceKey").where("id", "=", taskId).executeTakeFirstOrThrow();
  const images = await stack.db.selectFrom("taskImage").select("storageKey").where("taskId", "=", taskId).orderBy("index").execute();
  return [task.sourceKey, ...images.map((i) => i.storageKey)].filter((k): k is string => k !== null);
};

const inBucket = async (view: ReturnType<typeof createS3Storage>, keys: string[]) =>
  Object.fromEntries(await Promise.all(keys.map(async (k) => [k, (await view.read(k)) !== undefined] as const)));
const all = (keys: string[], value: boolean) => Object.fromEntries(keys.map((k) => [k, value]));

const backdate = (stack: Stack, taskIds: string[], days: number) =>
  stack.db.updateTable("task").set({ finishedAt: new Date(Date.now() - days * DAY_MS) }).where("id", "in", taskIds).execute();

const deletedMessage = /^done; its images were deleted on \d{4}-\d{2}-\d{2} \(image retention\)$/;
const viewOf = (stack: Stack, key: string, id: string) => call(stack.api.url, "GET", `/v1/tasks/${id}`, { key });
// The sweep runs every 200 ms here; 15 s leaves room for a busy machine.
const imagesDeleted = (stack: Stack, key: string, id: string) =>
  eventually(`image retention of ${id}`, async () => {
    const answer = await viewOf(stack, key, id);
    return answer.body.images?.length === 0 ? answer : undefined;
  }, 15_000);

// What the rows say about a task's files.
const rowsOf = async (stack: Stack, id: string) => ({
  ...(await stack.db.selectFrom("task").select(["imagesDeletedAt", "sourceKey"]).where("id", "=", id).executeTakeFirstOrThrow()),
  storageKeys: (await stack.db.selectFrom("taskImage").select("storageKey").where("taskId", "=", id).execute()).map((i) => i.storageKey),
});

// Every pass starts by pruning the provider-callback inbox (docs/retention.md, "How it runs"). An
// inbox row past its retention, inserted now, is gone once a pass has started after this call; the
// second one is deleted by a later pass, which starts only after the pass that took the first has
// ended. So when this returns, a whole pass has run since the call.
const wholePassRan = async (stack: Stack) => {
  for (const round of [1, 2]) {
    const marker = await stack.db
      .insertInto("providerCallback")
      .values({ taskId: null, rawBody: `{"retention marker":${round}}`, receivedAt: new Date(Date.now() - 40 * DAY_MS) })
      .returning("id")
      .executeTakeFirstOrThrow();
    await eventually(`retention pass ${round}`, async () => ((await stack.db.selectFrom("providerCallback").select("id").where("id", "=", marker.id).execute()).length === 0 ? true : undefined), 15_000);
  }
};

describe("image retention on S3, deleted by the sweep (IMAGE_RETENTION_BY unset)", () => {
  let stack: Stack;
  let view: ReturnType<typeof createS3Storage>;
  beforeAll(async () => {
    ({ stack, view } = await startS3Stack("sweep/", {}));
  });
  afterAll(async () => {
    view?.close();
    await stack?.stop();
  });

  it("when finished tasks pass IMAGE_RETENTION_DAYS, then their sources and results are deleted from the bucket and the tasks say so; a task not past it keeps every object", async () => {
    const { key } = await stack.newAccount();
    const old = [await finishedTask(stack, key, "inline"), await finishedTask(stack, key, "url")];
    const recent = await finishedTask(stack, key, "inline");
    // Each: its stored source (uploaded or downloaded) and one result.
    for (const t of [...old, recent]) expect(t.keys.map((k) => k.split("/")[0])).toEqual(["sources", "tasks"]);
    const oldKeys = old.flatMap((t) => t.keys);
    expect(await inBucket(view, [...oldKeys, ...recent.keys])).toEqual(all([...oldKeys, ...recent.keys], true));

    await backdate(stack, old.map((t) => t.id), 31);
    await backdate(stack, [recent.id], 29);
    for (const t of old) {
      const after = await imagesDeleted(stack, key, t.id);
      expect(after.status).toBe(200);
      expect(after.body.status).toBe("succeeded");
      expect(after.body.status_message).toMatch(deletedMessage);
      expect((await fetch(t.link)).status).toBe(404);
      expect(await rowsOf(stack, t.id)).toMatchObject({ imagesDeletedAt: expect.any(Date), sourceKey: null, storageKeys: [null] });
    }
    // The task is marked only once its objects have been deleted.
    expect(await inBucket(view, oldKeys)).toEqual(all(oldKeys, false));
    const dropin = await call(stack.api.url, "GET", `/kling/v1/images/editing/expand/${old[0]!.id}`, { key });
    expect(dropin.body.data.task_status).toBe("succeed");
    expect(dropin.body.data.task_result.images).toEqual([]);
    expect(dropin.body.data.task_status_msg).toMatch(deletedMessage);

    // Passes have run since (each old task was marked by one); the recent task is whole.
    await wholePassRan(stack);
    expect(await inBucket(view, recent.keys)).toEqual(all(recent.keys, true));
    const recentView = await viewOf(stack, key, recent.id);
    expect(recentView.body.status_message).toBe("done");
    expect(recentView.body.images).toHaveLength(1);
    expect((await fetch(recent.link)).status).toBe(200);
    expect(await rowsOf(stack, recent.id)).toMatchObject({ imagesDeletedAt: null, sourceKey: recent.keys[0], storageKeys: [recent.keys[1]] });
  });

  it("when the bucket cannot be reached as a task passes its retention, then nothing is marked deleted, and the next pass after the bucket is back deletes its objects", async () => {
    const { key } = await stack.newAccount();
    const task = await finishedTask(stack, key, "inline");
    const before = await rowsOf(stack, task.id);
    try {
      await proxy.setMode("refuse");
      await backdate(stack, [task.id], 31);
      await wholePassRan(stack);
      // The pass tried and failed: the rows still name every object, which are all still there.
      expect(await rowsOf(stack, task.id)).toEqual(before);
      expect(before).toMatchObject({ imagesDeletedAt: null, sourceKey: task.keys[0], storageKeys: [task.keys[1]] });
      expect(await inBucket(view, task.keys)).toEqual(all(task.keys, true));
      const during = await viewOf(stack, key, task.id);
      expect(during.body.status_message).toBe("done");
      expect(during.body.images).toHaveLength(1);
    } finally {
      await proxy.setMode("pass");
    }
    const after = await imagesDeleted(stack, key, task.id);
    expect(after.body.status_message).toMatch(deletedMessage);
    expect(await inBucket(view, task.keys)).toEqual(all(task.keys, false));
    expect(await rowsOf(stack, task.id)).toMatchObject({ imagesDeletedAt: expect.any(Date), sourceKey: null, storageKeys: [null] });
  });
});

describe("image retention on S3 left to a bucket lifecycle rule (IMAGE_RETENTION_BY=bucket-rule)", () => {
  let stack: Stack;
  let view: ReturnType<typeof createS3Storage>;
  beforeAll(async () => {
    ({ stack, view } = await startS3Stack("rule/", { IMAGE_RETENTION_BY: "bucket-rule" }));
  });
  afterAll(async () => {
    view?.close();
    await stack?.stop();
  });

  it("when finished tasks pass IMAGE_RETENTION_DAYS, then their objects stay in the bucket for the rule, while the rows stop naming them and the tasks say their images were deleted", async () => {
    const { key } = await stack.newAccount();
    const old = [await finishedTask(stack, key, "inline"), await finishedTask(stack, key, "url")];
    const recent = await finishedTask(stack, key, "inline");
    const oldKeys = old.flatMap((t) => t.keys);
    expect(oldKeys).toHaveLength(4);

    await backdate(stack, old.map((t) => t.id), 31);
    await backdate(stack, [recent.id], 29);
    for (const t of old) {
      const after = await imagesDeleted(stack, key, t.id);
      expect(after.body.status).toBe("succeeded");
      expect(after.body.status_message).toMatch(deletedMessage);
      // No link reaches an object left for the rule.
      expect((await fetch(t.link)).status).toBe(404);
      expect(await rowsOf(stack, t.id)).toMatchObject({ imagesDeletedAt: expect.any(Date), sourceKey: null, storageKeys: [null] });
    }
    await wholePassRan(stack);
    expect(await inBucket(view, [...oldKeys, ...recent.keys])).toEqual(all([...oldKeys, ...recent.keys], true));
    const recentView = await viewOf(stack, key, recent.id);
    expect(recentView.body.status_message).toBe("done");
    expect((await fetch(recent.link)).status).toBe(200);
    expect(await rowsOf(stack, recent.id)).toMatchObject({ imagesDeletedAt: null, sourceKey: recent.keys[0], storageKeys: [recent.keys[1]] });
  });
});
