import { connect } from "node:net";
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningApi } from "../../apps/api/api.server.ts";
import { spawnService, type ChildService } from "../support/child-processes.ts";
import { freePort } from "../support/free-port.ts";
import { call, waitForTask } from "../support/http.ts";
import { startHeldImageHost } from "../support/held-image-host.ts";
import { openSse, readUntil, type SseEvent, type SseStream } from "../support/sse.ts";
import { startStack, type Stack } from "../support/stack.ts";

// Live progress through the public HTTP API: SSE streams and long-polls served by one API process
// while the task is moved by the worker and by provider callbacks that reach another API process.
// Resync timers are set far beyond every wait here, so each update must come through Redis.

const ratios = { up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.2, right_expansion_ratio: 0.2 };

let stack: Stack;
let apiB: RunningApi;
let host: Awaited<ReturnType<typeof startHeldImageHost>>;
let redis: Redis;
const children: ChildService[] = [];
const liveEnv = { LIVE_HEARTBEAT_MS: "60000", LIVE_RESYNC_MS: "60000", LIVE_MAX_STREAMS_PER_ACCOUNT: "3", LIVE_MAX_WAIT_SECONDS: "30" };

beforeAll(async () => {
  stack = await startStack({ apiEnv: liveEnv });
  apiB = await stack.startApi();
  host = await startHeldImageHost();
  redis = new Redis(stack.env.redisUrl, { lazyConnect: true });
  await redis.connect();
});
afterAll(async () => {
  await Promise.all(children.map((c) => c.kill("SIGKILL")));
  await host?.stop();
  redis?.disconnect();
  await stack?.stop();
});

// A task that waits (queued) until `host.release(path)`.
const heldTask = async (key: string) => {
  const path = `/held/${randomUUID()}.png`;
  const created = await call(stack.api.url, "POST", "/v1/tasks", { key, body: { image: host.url(path), ...ratios } });
  expect(created.status).toBe(202);
  return { id: created.body.id as string, release: () => host.release(path) };
};

// A long-poll of `seconds` on a held task, on the stack's own API: only its wait's end can answer
// it. A claim of "at once, not at the end of the wait" is an order against it (answered while it
// is still open), which a loaded machine cannot flip the way it can overrun a wall-clock bound.
// Registered (counted open) before it is returned, so its wait is running. `finish` releases its
// task and takes its answer.
const openWaitMarker = async (key: string, seconds: number) => {
  const task = await heldTask(key);
  const before = stack.api.liveStats().open;
  let answered = false;
  const poll = call(stack.api.url, "GET", `/v1/tasks/${task.id}?wait=${seconds}`, { key }).finally(() => (answered = true));
  await expect.poll(() => stack.api.liveStats().open).toBe(before + 1);
  return {
    stillOpen: () => !answered,
    finish: async () => {
      task.release();
      await poll;
    },
  };
};

const streamUrl = (api: { url: string }, taskId: string) => new URL(`/v1/tasks/${taskId}/stream`, api.url).toString();
const parse = (event: SseEvent) => JSON.parse(event.data);
const historyOf = async (key: string, taskId: string) => (await call(stack.api.url, "GET", `/v1/tasks/${taskId}/events`, { key })).body.data as Array<{ id: string; to: string }>;

// What a stream says after the point `from` (its snapshot, or the event it resumed from):
// transitions with strictly growing ids, then the task as it then was; a task event between
// transitions (a change that is not one, such as why the task waits) repeats the latest id; `end` last.
const expectWellFormedUpdates = (from: { id: string; status: string }, events: SseEvent[]) => {
  let lastId = BigInt(from.id);
  let status = from.status;
  for (const event of events) {
    if (event.event === "transition") {
      expect(BigInt(event.id!)).toBeGreaterThan(lastId);
      lastId = BigInt(event.id!);
      expect(parse(event).from).toBe(status);
      status = parse(event).to;
    } else if (event.event === "task") {
      expect(event.id).toBe(lastId.toString());
      expect(parse(event).status).toBe(status);
    }
  }
  expect(events.at(-1)?.event).toBe("end");
};

describe("GET /v1/tasks/{id}/stream", () => {
  it("when a client follows a task on another API process (its own OS process), then it gets the snapshot, every transition in order as the worker and callbacks apply them, and the stream ends after `succeeded`", async () => {
    const port = await freePort();
    const child = spawnService("api", { ...stack.workerEnv(liveEnv), PORT: String(port), HOST: "127.0.0.1", LOG_LEVEL: "info" });
    children.push(child);
    await child.ready;
    const { key } = await stack.newAccount();
    const task = await heldTask(key);

    const stream = await openSse(streamUrl({ url: `http://127.0.0.1:${port}` }, task.id), { authorization: `Bearer ${key}` });
    expect(stream.status).toBe(200);
    expect(stream.headers["content-type"]).toBe("text/event-stream; charset=utf-8");
    const snapshot = await stream.next();
    expect(snapshot.event).toBe("task");
    expect(parse(snapshot)).toMatchObject({ id: task.id, status: "queued" });
    const [queued] = await historyOf(key, task.id);
    expect(snapshot.id).toBe(queued!.id);

    task.release();
    const updates = await readUntil(stream, (e) => e.event === "end");
    expect(await stream.ended).toBe(true);
    expectWellFormedUpdates({ id: snapshot.id!, status: "queued" }, updates);
    // Every transition after the snapshot, exactly as the history has them.
    const history = await historyOf(key, task.id);
    const transitions = updates.filter((e) => e.event === "transition").map((e) => ({ id: e.id, to: parse(e).to }));
    expect(transitions).toEqual(history.slice(1).map((h) => ({ id: h.id, to: h.to })));
    expect(transitions.map((t) => t.to)).toEqual(["submitting", "submitted", "processing", "archiving", "succeeded"]);
    const final = parse(updates.filter((e) => e.event === "task").at(-1)!);
    expect(final).toMatchObject({ id: task.id, status: "succeeded" });
    expect(final.images).toHaveLength(1);
    const got = await call(stack.api.url, "GET", `/v1/tasks/${task.id}`, { key });
    expect({ ...final, images: final.images.map((i: { url: string }) => ({ ...i, url: "" })) }).toEqual({
      ...got.body,
      images: got.body.images.map((i: { url: string }) => ({ ...i, url: "" })),
    });
  }, 60_000);

  it("when a client reconnects with Last-Event-ID, then it gets the transitions it missed, the task as it is, and the end", async () => {
    const { key } = await stack.newAccount();
    const task = await heldTask(key);
    const first = await openSse(streamUrl(apiB, task.id), { authorization: `Bearer ${key}` });
    const snapshot = await first.next();
    first.close();
    task.release();
    await waitForTask(stack.api.url, key, task.id, ["succeeded"]);

    const resumed = await openSse(streamUrl(apiB, task.id), { authorization: `Bearer ${key}`, "last-event-id": snapshot.id! });
    const events = await readUntil(resumed, (e) => e.event === "end");
    expectWellFormedUpdates({ id: snapshot.id!, status: "queued" }, events);
    const history = await historyOf(key, task.id);
    expect(events.filter((e) => e.event === "transition").map((e) => e.id)).toEqual(history.slice(1).map((h) => h.id));
    expect(events.map((e) => e.event)).toEqual(["transition", "transition", "transition", "transition", "transition", "task", "end"]);

    // Resumed from the last event: nothing missed, so only the task and the end.
    const caughtUp = await openSse(streamUrl(apiB, task.id), { authorization: `Bearer ${key}`, "last-event-id": history.at(-1)!.id });
    const rest = await readUntil(caughtUp, (e) => e.event === "end");
    expect(rest.map((e) => e.event)).toEqual(["task", "end"]);
    expect(rest[0]!.id).toBe(history.at(-1)!.id);
    expect(await caughtUp.ended).toBe(true);
  });

  it("when a stream stays quiet, then heartbeats (comment lines) arrive at the configured interval and nothing else", async () => {
    const api = await stack.startApi({ LIVE_HEARTBEAT_MS: "150" });
    const { key } = await stack.newAccount();
    const task = await heldTask(key);
    const stream = await openSse(streamUrl(api, task.id), { authorization: `Bearer ${key}` });
    expect((await stream.next()).event).toBe("task");
    // The stack's own interval is a minute, so its first comment would come at 60 s: three within
    // 30 s are this API's 150 ms, however loaded the machine (a 5 s bound here measured the load).
    await expect.poll(() => stream.comments(), { timeout: 30_000 }).toBeGreaterThanOrEqual(3);
    await expect(stream.next(100)).rejects.toThrow(/no event/);
    stream.close();
    task.release();
  }, 60_000);

  it("when pub/sub messages never reach the API (another channel prefix), then the stream still reaches the final state by re-reading Postgres on its timer", async () => {
    const api = await stack.startApi({ QUEUE_PREFIX: `${stack.env.queuePrefix}deaf`, LIVE_RESYNC_MS: "300" });
    const { key } = await stack.newAccount();
    const task = await heldTask(key);
    const stream = await openSse(streamUrl(api, task.id), { authorization: `Bearer ${key}` });
    const snapshot = await stream.next();
    expect(parse(snapshot)).toMatchObject({ status: "queued" });
    task.release();
    const events = await readUntil(stream, (e) => e.event === "end");
    expectWellFormedUpdates({ id: snapshot.id!, status: "queued" }, events);
    expect(parse(events.filter((e) => e.event === "task").at(-1)!).status).toBe("succeeded");
    const history = await historyOf(key, task.id);
    expect(events.filter((e) => e.event === "transition").map((e) => e.id)).toEqual(history.slice(1).map((h) => h.id));
  });

  it("when the API cannot reach Redis at all, then streams and long-polls still work from Postgres on the resync timer", async () => {
    const api = await stack.startApi({ REDIS_URL: "redis://127.0.0.1:1", LIVE_RESYNC_MS: "300" });
    const { key } = await stack.newAccount();
    const task = await heldTask(key);
    const stream = await openSse(streamUrl(api, task.id), { authorization: `Bearer ${key}` });
    const snapshot = await stream.next();
    expect(parse(snapshot)).toMatchObject({ status: "queued" });
    const poll = call(api.url, "GET", `/v1/tasks/${task.id}?wait=30`, { key });
    task.release();
    expect((await poll).body.status).not.toBe("queued");
    const events = await readUntil(stream, (e) => e.event === "end");
    expectWellFormedUpdates({ id: snapshot.id!, status: "queued" }, events);
    expect(parse(events.filter((e) => e.event === "task").at(-1)!).status).toBe("succeeded");
    await api.stop();
  });

  it("when a task has already ended, then the stream answers its snapshot and ends at once", async () => {
    const { key } = await stack.newAccount();
    const task = await heldTask(key);
    task.release();
    await waitForTask(stack.api.url, key, task.id, ["succeeded"]);
    const stream = await openSse(streamUrl(apiB, task.id), { authorization: `Bearer ${key}` });
    const events = await readUntil(stream, (e) => e.event === "end");
    expect(events.map((e) => e.event)).toEqual(["task", "end"]);
    expect(await stream.ended).toBe(true);
  });

  it("when the API process shuts down, then its open streams close without `end` (the client reconnects elsewhere)", async () => {
    const api = await stack.startApi();
    const { key } = await stack.newAccount();
    const task = await heldTask(key);
    // Opened before the stream and the long-poll, with the same wait: both must be closed while it
    // is still open, i.e. at the stop, not at the end of their wait.
    const marker = await openWaitMarker(key, 20);
    const stream = await openSse(streamUrl(api, task.id), { authorization: `Bearer ${key}` });
    await stream.next();
    const poll = call(api.url, "GET", `/v1/tasks/${task.id}?wait=20`, { key });
    await expect.poll(() => api.liveStats().open).toBe(2);
    await api.stop();
    // Closed, and with no `end` event before the close.
    await stream.ended;
    await expect(stream.next()).rejects.toThrow(/ended/);
    // The long-poll is answered (as the task is) rather than cut off.
    expect((await poll).body).toMatchObject({ id: task.id, status: "queued" });
    expect(marker.stillOpen()).toBe(true);
    task.release();
    await marker.finish();
  });

  it("when an account opens more streams than allowed, then the next is a 429 with Retry-After; closing clients releases every place, listener and subscription", async () => {
    const { key, accountId } = await stack.newAccount();
    const other = await stack.newAccount();
    const task = await heldTask(key);
    const channel = `${stack.env.queuePrefix}:live:account:${accountId}`;
    const auth = { authorization: `Bearer ${key}` };
    const streams: SseStream[] = [];
    for (let i = 0; i < 3; i++) streams.push(await openSse(streamUrl(apiB, task.id), auth));
    for (const s of streams) expect((await s.next()).event).toBe("task");
    expect(apiB.liveStats()).toMatchObject({ listeners: 3, channels: 1, open: 3 });
    expect(await redis.pubsub("NUMSUB", channel)).toEqual([channel, 1]);

    const refused = await openSse(streamUrl(apiB, task.id), auth);
    expect(refused.status).toBe(429);
    expect(refused.headers["retry-after"]).toBe("5");
    expect(JSON.parse(await refused.text())).toMatchObject({ status: 429, detail: expect.stringMatching(/limit is 3/) });
    const poll = await call(apiB.url, "GET", `/v1/tasks/${task.id}?wait=5`, { key });
    expect(poll.status).toBe(429);
    const dropinPoll = await call(apiB.url, "GET", `/kling/v1/images/editing/expand/${task.id}?wait=5`, { key });
    expect(dropinPoll.status).toBe(429);
    expect(dropinPoll.body).toMatchObject({ code: 1302 });
    // Another account is not affected.
    const otherTask = await heldTask(other.key);
    const theirs = await openSse(streamUrl(apiB, otherTask.id), { authorization: `Bearer ${other.key}` });
    expect(theirs.status).toBe(200);
    theirs.close();

    for (const s of streams) s.close();
    await expect.poll(() => apiB.liveStats()).toEqual({ listeners: 0, channels: 0, open: 0 });
    await expect.poll(() => redis.pubsub("NUMSUB", channel)).toEqual([channel, 0]);
    const again = await openSse(streamUrl(apiB, task.id), auth);
    expect(again.status).toBe(200);
    again.close();
    await expect.poll(() => apiB.liveStats().open).toBe(0);
    task.release();
    otherTask.release();
  });

  it("when clients vanish at any moment (before the first event, mid-stream, mid-long-poll), then every place, listener and subscription is released", async () => {
    const api = await stack.startApi({ LIVE_MAX_STREAMS_PER_ACCOUNT: "100" });
    const { key, accountId } = await stack.newAccount();
    const task = await heldTask(key);
    const { port } = new URL(api.url);
    const vanish = (path: string, afterMs: number) =>
      new Promise<void>((resolve) => {
        const socket = connect(Number(port), "127.0.0.1", () => {
          socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n\r\n`);
          setTimeout(() => {
            socket.destroy();
            resolve();
          }, afterMs);
        });
        socket.on("error", () => resolve());
      });
    const paths = [`/v1/tasks/${task.id}/stream`, `/v1/tasks/${task.id}?wait=20`, `/kling/v1/images/editing/expand/${task.id}?wait=20`];
    await Promise.all(Array.from({ length: 45 }, (_, i) => vanish(paths[i % 3]!, i % 15)));
    const channel = `${stack.env.queuePrefix}:live:account:${accountId}`;
    await expect.poll(() => api.liveStats()).toEqual({ listeners: 0, channels: 0, open: 0 });
    expect(await redis.pubsub("NUMSUB", channel)).toEqual([channel, 0]);
    task.release();
  });

  it("when the key is missing or wrong, the task unknown or another account's, or Last-Event-ID malformed, then the stream is refused like GET", async () => {
    const { key } = await stack.newAccount();
    const other = await stack.newAccount();
    const task = await heldTask(key);
    const url = streamUrl(apiB, task.id);
    const cases: Array<[Record<string, string>, string, number]> = [
      [{}, url, 401],
      [{ authorization: "Bearer not-a-key-0123456789" }, url, 401],
      [{ authorization: `Bearer ${other.key}` }, url, 404],
      [{ authorization: `Bearer ${key}` }, streamUrl(apiB, randomUUID()), 404],
      [{ authorization: `Bearer ${key}` }, streamUrl(apiB, "not-a-uuid"), 404],
      [{ authorization: `Bearer ${key}`, "last-event-id": "abc" }, url, 400],
      [{ authorization: `Bearer ${key}`, "last-event-id": "-1" }, url, 400],
      [{ authorization: `Bearer ${key}`, "last-event-id": "99999999999999999999" }, url, 400],
      [{ authorization: `Bearer ${key}`, "last-event-id": "9223372036854775808" }, url, 400],
    ];
    for (const [headers, target, status] of cases) {
      const answer = await openSse(target, headers);
      expect({ headers, status: answer.status }).toEqual({ headers, status });
      const body = JSON.parse(await answer.text());
      expect(body.status).toBe(status);
      if (status === 400) expect(body.errors).toEqual([{ field: "Last-Event-ID", message: expect.any(String) }]);
    }
    const post = await call(apiB.url, "POST", `/v1/tasks/${task.id}/stream`, { key });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET");
    // HEAD says the stream exists and holds nothing open.
    const head = await fetch(url, { method: "HEAD", headers: { authorization: `Bearer ${key}` } });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    await expect.poll(() => apiB.liveStats().open).toBe(0);
    task.release();
  });
});

describe("GET /v1/tasks/{id}?wait= (long-poll)", () => {
  it("when the task does not change, then the answer comes when the wait is over, unchanged", async () => {
    const { key } = await stack.newAccount();
    const task = await heldTask(key);
    const started = Date.now();
    const answer = await call(apiB.url, "GET", `/v1/tasks/${task.id}?wait=1`, { key });
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ id: task.id, status: "queued" });
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    const dropinStarted = Date.now();
    const dropin = await call(apiB.url, "GET", `/kling/v1/images/editing/expand/${task.id}?wait=1`, { key });
    expect(dropin.body).toMatchObject({ code: 0, data: { task_id: task.id, task_status: "submitted" } });
    expect(Date.now() - dropinStarted).toBeGreaterThanOrEqual(950);
    task.release();
  });

  it("when the task changes while a client waits on another API process, then the answer comes at the change, not at the end of the wait", async () => {
    const { key } = await stack.newAccount();
    const task = await heldTask(key);
    const marker = await openWaitMarker(key, 30);
    const open = apiB.liveStats().open;
    const poll = call(apiB.url, "GET", `/v1/tasks/${task.id}?wait=30`, { key });
    // The change comes once the client is waiting, not on a timer that a loaded machine can run
    // before the request has even arrived (then the answer was immediate and proved nothing).
    await expect.poll(() => apiB.liveStats().open).toBe(open + 1);
    task.release();
    const answer = await poll;
    expect(answer.status).toBe(200);
    expect(answer.body.status).not.toBe("queued");
    // Answered at the change: before the wait (opened after the marker's, as long) was over.
    expect(marker.stillOpen()).toBe(true);
    await marker.finish();
  }, 60_000);

  it("when a drop-in client waits, then it is answered when the provider-shaped status changes (submitted -> processing), by task id or external id", async () => {
    const { key } = await stack.newAccount();
    const path = `/held/${randomUUID()}.png`;
    const externalId = `live-${randomUUID()}`;
    const created = await call(stack.api.url, "POST", "/kling/v1/images/editing/expand", {
      key,
      body: { image: host.url(path), ...ratios, external_task_id: externalId },
    });
    expect(created.status).toBe(200);
    const marker = await openWaitMarker(key, 30);
    const open = apiB.liveStats().open;
    const poll = call(apiB.url, "GET", `/kling/v1/images/editing/expand/${externalId}?wait=30`, { key });
    await expect.poll(() => apiB.liveStats().open).toBe(open + 1);
    host.release(path);
    const answer = await poll;
    expect(answer.body.code).toBe(0);
    expect(answer.body.data.task_id).toBe(created.body.data.task_id);
    expect(["processing", "succeed"]).toContain(answer.body.data.task_status);
    expect(marker.stillOpen()).toBe(true);
    await marker.finish();
  }, 60_000);

  it("when the task has already ended, then a long-poll answers at once", async () => {
    const { key } = await stack.newAccount();
    const task = await heldTask(key);
    task.release();
    await waitForTask(stack.api.url, key, task.id, ["succeeded"]);
    // A marker of 5 s opened first: a read that waited out its 20 s would answer after it.
    const marker = await openWaitMarker(key, 5);
    const answer = await call(apiB.url, "GET", `/v1/tasks/${task.id}?wait=20`, { key });
    expect(answer.body.status).toBe("succeeded");
    expect(marker.stillOpen()).toBe(true);
    await marker.finish();
  });

  it("when `wait` is not a whole number of seconds within the cap, then the native and drop-in reads are 400s naming `wait`", async () => {
    const { key } = await stack.newAccount();
    const task = await heldTask(key);
    for (const query of ["wait=abc", "wait=-1", "wait=1.5", "wait=31", "wait=", "wait=1e1", "wait=%201", "wait=1&wait=2", "wait=99999999999", "wait=0x10"]) {
      const native = await call(apiB.url, "GET", `/v1/tasks/${task.id}?${query}`, { key });
      expect({ query, status: native.status }).toEqual({ query, status: 400 });
      expect(native.body.errors).toEqual([{ field: "wait", message: "must be a whole number of seconds from 0 to 30" }]);
      const dropin = await call(apiB.url, "GET", `/kling/v1/images/editing/expand/${task.id}?${query}`, { key });
      expect({ query, status: dropin.status }).toEqual({ query, status: 400 });
      expect(dropin.body).toMatchObject({ code: 1201, message: expect.stringMatching(/^wait: /) });
    }
    const zero = await call(apiB.url, "GET", `/v1/tasks/${task.id}?wait=0`, { key });
    expect(zero.body.status).toBe("queued");
    task.release();
  });

  it("when the key is missing or wrong or the task is another account's, then a long-poll is refused at once", async () => {
    const { key } = await stack.newAccount();
    const other = await stack.newAccount();
    const task = await heldTask(key);
    // Opened first with the same wait: a refusal that waited would answer after it.
    const marker = await openWaitMarker(key, 5);
    expect((await call(apiB.url, "GET", `/v1/tasks/${task.id}?wait=5`)).status).toBe(401);
    expect((await call(apiB.url, "GET", `/v1/tasks/${task.id}?wait=5`, { key: "not-a-key-0123456789" })).status).toBe(401);
    expect((await call(apiB.url, "GET", `/v1/tasks/${task.id}?wait=5`, { key: other.key })).status).toBe(404);
    expect((await call(apiB.url, "GET", `/kling/v1/images/editing/expand/${task.id}?wait=5`, { key: other.key })).body).toMatchObject({ code: 1203 });
    expect((await call(apiB.url, "GET", `/kling/v1/images/editing/expand/${task.id}?wait=5`)).body).toMatchObject({ code: 1001 });
    expect(marker.stillOpen()).toBe(true);
    task.release();
    await marker.finish();
  });
});
