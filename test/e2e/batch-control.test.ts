import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ndjsonLines, openBatchUpload, postBatchStream, waitUntil } from "../support/batches.ts";
import { spawnService, type ChildService } from "../support/child-processes.ts";
import { ratios, simAdmin, testImage } from "../support/fault-kit.ts";
import { freePort } from "../support/free-port.ts";
import { startHeldImageHost } from "../support/held-image-host.ts";
import { call } from "../support/http.ts";
import { openSse, readUntil, type SseEvent } from "../support/sse.ts";
import { startStack, type Stack } from "../support/stack.ts";
import { startWebhookConsumer, type Received, type WebhookConsumer } from "../support/webhook-consumer.ts";

// Cancel and retry of a batch move its tasks through the one transition function: callbacks, live
// updates and history follow. Uploads hold a lease: one whose API process was SIGKILLed ends
// broken_off with exactly its committed chunks, and a batch can be canceled while it is received.
// Live resyncs are set far beyond every wait here, so each live update must come from the change.

const CHUNK = 5;
let stack: Stack;
let consumer: WebhookConsumer;
let host: Awaited<ReturnType<typeof startHeldImageHost>>;
const children: ChildService[] = [];

beforeAll(async () => {
  consumer = await startWebhookConsumer();
  host = await startHeldImageHost();
  stack = await startStack({
    apiEnv: { ALLOWED_PRIVATE_HOSTS: "127.0.0.1", LIVE_RESYNC_MS: "60000", LIVE_HEARTBEAT_MS: "60000", BATCH_CHUNK_ITEMS: String(CHUNK) },
    // Held source downloads must outlast the test rather than time out. A create held by the
    // simulator stays in flight until the test drops it, once it has canceled meanwhile; 12 s is
    // the bound if it never does (at 5 s a loaded run found it back in the queue, canceled). No
    // circuit: failing creates are a test's choice here, and an open circuit would hold the rest
    // for 30 s.
    workerEnv: {
      SUBMIT_MAX_ATTEMPTS: "2",
      IMAGE_FETCH_TIMEOUT_MS: "120000",
      IMAGE_FETCH_TOTAL_TIMEOUT_MS: "120000",
      PROVIDER_TIMEOUT_MS: "12000",
      CIRCUIT_FAILURE_THRESHOLD: "1000",
    },
  });
});
afterAll(async () => {
  await Promise.all(children.map((c) => c.kill("SIGKILL")));
  await host?.stop();
  await stack?.stop();
  await consumer?.close();
});

const headersOf = (r: Received) => Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k, String(v)]));
const parse = (e: SseEvent) => JSON.parse(e.data);
const getBatch = async (key: string, id: string) => (await call(stack.api.url, "GET", `/v1/batches/${id}`, { key })).body;
const batchTasks = async (key: string, id: string) => (await call(stack.api.url, "GET", `/v1/batches/${id}/tasks?limit=200`, { key })).body.data as any[];
const ended = (b: any) => ["completed", "completed_with_errors", "canceled"].includes(b?.status);
// Every request on `path`, verified with the account's signing secret (a forged one throws).
const verified = (secret: string, path: string) =>
  consumer.received.filter((r) => r.path === path).map((r) => ({ id: r.headers["webhook-id"], event: new Webhook(secret).verify(r.body, headersOf(r)) as any }));
// The batch's own events come with progress events before them: wait for the one of this type.
const eventsOfType = (secret: string, path: string, type: string) =>
  waitUntil(async () => verified(secret, path).filter((i) => i.event.type === type), (list) => list.length > 0, 30_000, `${type} delivered`);
const simulator = (body: unknown) =>
  fetch(`${stack.simulator.url}/_sim/config`, { method: "PATCH", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

describe("cancel and retry of a running batch", () => {
  it("when a batch with item callbacks is canceled mid-run, then each canceled item gets one signed task.canceled and the streams show the cancel at once", async () => {
    const { key } = await stack.newAccount();
    const { secret } = (await call(stack.api.url, "GET", "/v1/webhooks/secret", { key })).body;
    const image = await testImage();
    const held = Array.from({ length: 5 }, (_, i) => ({ image: host.url(`/cancel/${i}.png`) }));
    const created = await call(stack.api.url, "POST", "/v1/batches", {
      key,
      body: { defaults: { ...ratios, callback_url: `${consumer.url}/a` }, callback_url: `${consumer.url}/a-batch`, items: [{ image }, { image }, ...held] },
    });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    const stream = await openSse(`${stack.api.url}/v1/batches/${id}/stream`, { authorization: `Bearer ${key}` });
    // The two inline items run to their end; the five whose image is held stay queued.
    await readUntil(stream, (e) => e.event === "batch" && parse(e).counts.succeeded === 2, 60_000);
    const heldTask = (await batchTasks(key, id)).find((t) => t.status === "queued");
    const taskStream = await openSse(`${stack.api.url}/v1/tasks/${heldTask.id}/stream`, { authorization: `Bearer ${key}` });
    await taskStream.next();

    const canceled = await call(stack.api.url, "POST", `/v1/batches/${id}/cancel`, { key });
    expect(canceled.status).toBe(200);
    expect(canceled.body).toMatchObject({ status: "canceled", canceled_now: 5, counts: { canceled: 5, succeeded: 2, queued: 0 } });
    // Well before any resync (60 s): the change itself was published.
    const seen = await readUntil(stream, (e) => e.event === "end", 15_000);
    expect(seen.filter((e) => e.event === "batch").map(parse).at(-1)).toMatchObject({ status: "canceled", counts: { canceled: 5 } });
    const transitions = await readUntil(taskStream, (e) => e.event === "transition", 15_000);
    expect(parse(transitions.at(-1)!)).toMatchObject({ from: "queued", to: "canceled" });
    stream.close();
    taskStream.close();

    await consumer.waitFor("/a", 7, 30_000);
    const items = verified(secret, "/a");
    const canceledIds = (await batchTasks(key, id)).filter((t) => t.status === "canceled").map((t) => t.id);
    expect(items.filter((i) => i.event.type === "task.canceled").map((i) => i.event.data.id).sort()).toEqual(canceledIds.sort());
    expect(items.filter((i) => i.event.type === "task.succeeded")).toHaveLength(2);
    // Once per webhook-id: no event was delivered twice.
    expect(new Set(items.map((i) => i.id)).size).toBe(items.length);
    const completed = await eventsOfType(secret, "/a-batch", "batch.completed");
    expect(completed.map((i) => i.event.data)).toMatchObject([{ id, status: "canceled" }]);
  }, 90_000);

  it("when a batch's failed tasks are retried, then each emits its events again: history, callbacks and the live stream", async () => {
    const { key } = await stack.newAccount();
    const { secret } = (await call(stack.api.url, "GET", "/v1/webhooks/secret", { key })).body;
    const image = await testImage();
    // Every create answered 5000 (transient): each item fails after its two attempts. (A random
    // mix of codes included 1303s, which spend no attempt and lower the capacity for 10 s each:
    // a loaded run had not failed them all within 60 s.)
    await simulator({ create_error_code: 5000 });
    let id: string;
    try {
      const created = await call(stack.api.url, "POST", "/v1/batches", {
        key,
        body: { defaults: { ...ratios, callback_url: `${consumer.url}/b` }, items: [{ image }, { image }, { image }] },
      });
      expect(created.status).toBe(201);
      id = created.body.id;
      expect(await waitUntil(() => getBatch(key, id), ended, 60_000, "batch failed")).toMatchObject({ counts: { failed: 3 } });
    } finally {
      await simulator({ create_error_code: null });
    }
    await consumer.waitFor("/b", 3, 30_000);

    const retried = await call(stack.api.url, "POST", `/v1/batches/${id}/retry`, { key });
    expect(retried.body).toMatchObject({ retried: 3 });
    const stream = await openSse(`${stack.api.url}/v1/batches/${id}/stream`, { authorization: `Bearer ${key}` });
    const seen = await readUntil(stream, (e) => e.event === "end", 60_000);
    expect(seen.filter((e) => e.event === "batch").map(parse).at(-1)).toMatchObject({ status: "completed", counts: { succeeded: 3 } });
    stream.close();

    await consumer.waitFor("/b", 6, 30_000);
    const events = verified(secret, "/b").map((i) => i.event);
    expect(events.map((e) => e.type).sort()).toEqual(["task.failed", "task.failed", "task.failed", "task.succeeded", "task.succeeded", "task.succeeded"]);
    for (const task of await batchTasks(key, id)) {
      const history = (await call(stack.api.url, "GET", `/v1/tasks/${task.id}/events`, { key })).body.data as { from: string | null; to: string }[];
      expect(history.filter((e) => e.from === "failed" && e.to === "queued")).toHaveLength(1);
      expect(history.at(-1)).toMatchObject({ to: "succeeded" });
    }
  }, 120_000);

  it("when a batch is canceled while an item's create is in flight and the provider never made it, then the item is canceled, not sent again", async () => {
    const { key } = await stack.newAccount();
    const image = await testImage();
    const stats = async () => (await call(stack.simulator.url, "GET", "/_sim/stats")).body as { connection_faults: number };
    const faultsBefore = (await stats()).connection_faults;
    // The create hangs before the provider makes the task until the test drops its connection:
    // the outcome is unknown to the worker, so the task stays `submitting` and the cancel cannot
    // take it.
    await simulator({ timeout_rate: 1, connection_fault_point: "before_create", hang_ms: 120_000 });
    let id: string;
    try {
      const created = await call(stack.api.url, "POST", "/v1/batches", { key, body: { defaults: ratios, items: [{ image }] } });
      expect(created.status).toBe(201);
      id = created.body.id;
      await waitUntil(stats, (s) => s.connection_faults > faultsBefore, 30_000, "the create hanging at the simulator");
      const canceled = await call(stack.api.url, "POST", `/v1/batches/${id}/cancel`, { key });
      expect(canceled.status).toBe(200);
      expect(canceled.body).toMatchObject({ canceled_now: 0, counts: { submitting: 1 } });
    } finally {
      await simulator({ timeout_rate: 0, connection_fault_point: "after_create" });
      // The worker sees the connection reset: still no answer, so still an unknown outcome.
      await simAdmin(stack).dropHanging();
    }
    // The next attempt asks the provider first (nothing there), and then must not create it.
    const batch = await waitUntil(() => getBatch(key, id), ended, 60_000, "batch ended");
    expect(batch).toMatchObject({ status: "canceled", counts: { canceled: 1, succeeded: 0 } });
    const [task] = await batchTasks(key, id);
    const atProvider = (await call(stack.simulator.url, "GET", "/_sim/tasks")).body as { external_task_id: string | null }[];
    expect(atProvider.filter((t) => t.external_task_id === task.id)).toEqual([]);
    const history = (await call(stack.api.url, "GET", `/v1/tasks/${task.id}/events`, { key })).body.data as { from: string | null; to: string }[];
    expect(history.at(-1)).toMatchObject({ from: "submitting", to: "canceled" });
  }, 120_000);
});

describe("a large batch", () => {
  it("when a batch of 1,100 items is canceled, then every item is moved in chunks with one event and one callback each", async () => {
    const { key } = await stack.newAccount();
    const items = 1_100;
    const query = `item_callback_url=${encodeURIComponent(`${consumer.url}/large`)}`;
    // An API with the default chunk size (the stack's other one takes 5 lines at a time).
    const api = await stack.startApi({ BATCH_CHUNK_ITEMS: "1000" });
    const created = await postBatchStream(api.url, key, ndjsonLines(items, (i) => ({ image: host.url(`/large/${i}.png`), ...ratios })), { query });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    const canceled = await call(stack.api.url, "POST", `/v1/batches/${id}/cancel`, { key });
    expect(canceled.body).toMatchObject({ status: "canceled", canceled_now: items, counts: { canceled: items } });
    const events = await stack.db
      .selectFrom("taskEvent")
      .innerJoin("task", "task.id", "taskEvent.taskId")
      .select((eb) => [eb.fn.countAll<string>().as("n"), eb.fn.count<string>("taskEvent.taskId").distinct().as("tasks")])
      .where("task.batchId", "=", id)
      .where("taskEvent.toStatus", "=", "canceled")
      .executeTakeFirstOrThrow();
    expect(events).toEqual({ n: String(items), tasks: String(items) });
    const outbound = await stack.db
      .selectFrom("webhookDelivery")
      .select((eb) => [eb.fn.countAll<string>().as("n"), eb.fn.count<string>("taskId").distinct().as("tasks")])
      .where("batchId", "=", id)
      .where("eventType", "=", "task.canceled")
      .executeTakeFirstOrThrow();
    expect(outbound).toEqual({ n: String(items), tasks: String(items) });
  }, 60_000);
});

describe("upload leases", () => {
  it("when the API reading two uploads is SIGKILLed, then both end broken_off with exactly their committed items: one runs to its end, the other can be canceled", async () => {
    const port = await freePort();
    const child = spawnService("api", {
      ...stack.workerEnv(),
      PORT: String(port),
      HOST: "127.0.0.1",
      LOG_LEVEL: "info",
      BATCH_UPLOAD_LEASE_MS: "1500",
      BATCH_CHUNK_ITEMS: String(CHUNK),
    });
    children.push(child);
    await child.ready;
    const apiUrl = `http://127.0.0.1:${port}`;
    const { key, accountId } = await stack.newAccount();
    const image = await testImage();
    const runs = openBatchUpload(apiUrl, key, `callback_url=${encodeURIComponent(`${consumer.url}/c-batch`)}`);
    const waits = openBatchUpload(apiUrl, key);
    // One chunk and then some lines of the next, which is never committed.
    await runs.write(ndjsonLines(CHUNK + 2, () => ({ image, ...ratios })));
    await waits.write(ndjsonLines(CHUNK + 2, (i) => ({ image: host.url(`/kill/${i}.png`), ...ratios })));
    const batches = await waitUntil(
      () => stack.db.selectFrom("batch").select(["id", "acceptedItems", "callbackUrl"]).where("accountId", "=", accountId).execute(),
      (rows) => rows.length === 2 && rows.every((b) => b.acceptedItems === CHUNK),
      30_000,
      "first chunks committed",
    );
    await child.kill("SIGKILL");
    expect(await runs.answer).toMatchObject({ error: expect.any(Error) });

    // The worker's sweep ends both once their lease (1.5 s) lapsed.
    for (const b of batches) {
      const view = await waitUntil(() => getBatch(key, b.id), (v) => v.upload === "broken_off", 30_000, "upload ended by the sweep");
      expect(view.status).not.toBe("receiving");
      const tasks = await stack.db.selectFrom("task").select("batchLine").where("batchId", "=", b.id).orderBy("batchLine").execute();
      expect(tasks.map((t) => t.batchLine)).toEqual(Array.from({ length: CHUNK }, (_, i) => i + 1));
    }
    const running = batches.find((b) => b.callbackUrl)!;
    const waiting = batches.find((b) => !b.callbackUrl)!;
    const done = await waitUntil(() => getBatch(key, running.id), ended, 60_000, "broken-off batch ran to its end");
    expect(done).toMatchObject({ status: "completed_with_errors", upload: "broken_off", total: CHUNK, counts: { succeeded: CHUNK } });
    const { secret } = (await call(stack.api.url, "GET", "/v1/webhooks/secret", { key })).body;
    const completed = await eventsOfType(secret, "/c-batch", "batch.completed");
    expect(completed.map((i) => i.event.data)).toMatchObject([{ id: running.id, status: "completed_with_errors", upload: "broken_off" }]);

    const canceled = await call(stack.api.url, "POST", `/v1/batches/${waiting.id}/cancel`, { key });
    expect(canceled.body).toMatchObject({ status: "canceled", canceled_now: CHUNK, counts: { canceled: CHUNK } });
  }, 180_000);

  it("when a batch is canceled while its upload is still arriving, then its tasks so far are canceled and the upload stops at its next chunk with a 409", async () => {
    const { key, accountId } = await stack.newAccount();
    const upload = openBatchUpload(stack.api.url, key);
    const line = (i: number) => ({ image: host.url(`/receiving/${i}.png`), ...ratios });
    await upload.write(ndjsonLines(CHUNK + 1, line));
    const batch = await waitUntil(
      () => stack.db.selectFrom("batch").select(["id", "acceptedItems"]).where("accountId", "=", accountId).executeTakeFirst(),
      (b) => b?.acceptedItems === CHUNK,
      30_000,
      "first chunk committed",
    );
    expect((await getBatch(key, batch!.id)).status).toBe("receiving");
    const canceled = await call(stack.api.url, "POST", `/v1/batches/${batch!.id}/cancel`, { key });
    expect(canceled.body).toMatchObject({ status: "canceled", upload: "broken_off", canceled_now: CHUNK });

    // The client goes on sending: its next chunk is refused, with the reason.
    await upload.write(ndjsonLines(CHUNK, line));
    upload.end();
    const answer = (await upload.answer) as { status: number; body: any };
    expect(answer.status).toBe(409);
    expect(answer.body.detail).toMatch(/was canceled while its upload was being read/);
    expect(await stack.db.selectFrom("task").select("id").where("batchId", "=", batch!.id).execute()).toHaveLength(CHUNK);
    expect(await getBatch(key, batch!.id)).toMatchObject({ status: "canceled", total: CHUNK, counts: { canceled: CHUNK } });
  }, 60_000);
});
