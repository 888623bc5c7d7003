import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ratios, testImage } from "../support/fault-kit.ts";
import { call } from "../support/http.ts";
import { openSse, readUntil } from "../support/sse.ts";
import { startStack, type Stack } from "../support/stack.ts";
import { startWebhookConsumer, type Received, type WebhookConsumer } from "../support/webhook-consumer.ts";

// A batch's callback_url gets batch.progress (throttled) and one batch.completed, recorded by the
// worker even when nobody reads the batch; GET /v1/batches/{id}/stream shows it live and ends.

const headersOf = (r: Received) => Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k, String(v)]));

describe("batch events and the batch stream", () => {
  let stack: Stack;
  let consumer: WebhookConsumer;

  beforeAll(async () => {
    consumer = await startWebhookConsumer();
    stack = await startStack({
      apiEnv: { ALLOWED_PRIVATE_HOSTS: "127.0.0.1" },
      workerEnv: { BATCH_PROGRESS_EVERY_MS: "200" },
      // Slow enough for the counts to be seen moving.
      simulatorEnv: { SIM_RUN_MS: "1200" },
    });
  });
  afterAll(async () => {
    await stack?.stop();
    await consumer?.close();
  });

  const postBatch = async (key: string, body: Record<string, unknown>) => {
    const answer = await call(stack.api.url, "POST", "/v1/batches", { key, body });
    expect(answer.status).toBe(201);
    return answer.body.id as string;
  };

  it("when a batch with a callback_url runs unread, then signed batch.progress events arrive, then one batch.completed as GET shows the batch", async () => {
    const { key } = await stack.newAccount();
    const { secret } = (await call(stack.api.url, "GET", "/v1/webhooks/secret", { key })).body;
    const image = await testImage();
    const batchId = await postBatch(key, {
      name: "events",
      defaults: ratios,
      callback_url: `${consumer.url}/batch`,
      items: [{ image, callback_url: `${consumer.url}/item` }, { image }, { image }, { image }],
    });
    // Nobody reads the batch: the worker's sweep must notice its end.
    const completedAt = Date.now() + 30_000;
    let events: Record<string, any>[] = [];
    while (!events.some((e) => e.type === "batch.completed")) {
      if (Date.now() > completedAt) throw new Error(`no batch.completed: ${JSON.stringify(events.map((e) => e.type))}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
      events = consumer.received.filter((r) => r.path === "/batch").map((r) => new Webhook(secret).verify(r.body, headersOf(r)) as Record<string, any>);
    }
    const types = events.map((e) => e.type);
    expect(types.filter((t) => t === "batch.completed")).toHaveLength(1);
    expect(types.at(-1)).toBe("batch.completed");
    expect(types.filter((t) => t === "batch.progress").length).toBeGreaterThanOrEqual(1);
    // Progress moves forward, in the order recorded.
    const finished = events.map((e) => e.data.finished as number);
    expect([...finished].sort((a, b) => a - b)).toEqual(finished);
    const completed = events.at(-1)!.data;
    expect(completed).toMatchObject({ id: batchId, status: "completed", total: 4, finished: 4, percent: 100 });
    const shown = (await call(stack.api.url, "GET", `/v1/batches/${batchId}`, { key })).body;
    expect({ ...completed, throughput_per_second: undefined, eta_seconds: undefined }).toEqual({ ...shown, throughput_per_second: undefined, eta_seconds: undefined });
    // The deliveries are in the log, filterable by batch.
    const log = (await call(stack.api.url, "GET", `/v1/webhooks/deliveries?batch_id=${batchId}`, { key })).body.data as { event_type: string; status: string }[];
    expect(log.filter((d) => d.event_type === "batch.completed")).toHaveLength(1);
    // ...and so are the events of its items that have a callback_url of their own.
    expect(log.filter((d) => d.event_type === "task.succeeded")).toHaveLength(1);
  });

  it("when a batch is followed by its stream, then a snapshot comes first, counts move, and the stream ends with the batch; another account gets a 404", async () => {
    const { key } = await stack.newAccount();
    const image = await testImage();
    const batchId = await postBatch(key, { name: "stream", defaults: ratios, items: [{ image }, { image }, { image }] });
    const stream = await openSse(`${stack.api.url}/v1/batches/${batchId}/stream`, { authorization: `Bearer ${key}` });
    expect(stream.status).toBe(200);
    const seen = await readUntil(stream, (e) => e.event === "end", 30_000);
    const batches = seen.filter((e) => e.event === "batch").map((e) => JSON.parse(e.data) as { id: string; status: string; finished: number });
    expect(batches.length).toBeGreaterThanOrEqual(2);
    expect(batches.every((b) => b.id === batchId)).toBe(true);
    expect(batches.at(-1)).toMatchObject({ status: "completed", finished: 3 });
    expect(seen.at(-1)!.event).toBe("end");
    expect(await stream.ended).toBe(true);

    const other = await stack.newAccount();
    const foreign = await openSse(`${stack.api.url}/v1/batches/${batchId}/stream`, { authorization: `Bearer ${other.key}` });
    expect(foreign.status).toBe(404);
    foreign.close();
    const unauthenticated = await openSse(`${stack.api.url}/v1/batches/${batchId}/stream`);
    expect(unauthenticated.status).toBe(401);
    unauthenticated.close();
  });
});
