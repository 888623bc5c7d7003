import { bullQueueName } from "../../apps/domain/queues/job-catalog.ts";
import { request } from "node:http";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { postBatchStream, ndjsonLines, waitUntil } from "../support/batches.ts";
import { startFileServer } from "../support/file-server.ts";
import { call } from "../support/http.ts";
import { makeImage } from "../support/images.ts";
import { startStack, type Stack } from "../support/stack.ts";

// Intake only (no worker): every task stays queued, so counts and cancels are exact.
let stack: Stack;
let files: Awaited<ReturnType<typeof startFileServer>>;
let imageUrl: string;
const ratios = { up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1 };

beforeAll(async () => {
  stack = await startStack({ withWorker: false, apiEnv: { BATCH_CHUNK_ITEMS: "200" } });
  files = await startFileServer({ "/a.png": { body: await makeImage(400, 300) } });
  imageUrl = files.url("/a.png");
});
afterAll(async () => {
  await files?.stop();
  await stack?.stop();
});

// Transactions of other sessions on the stack's database that are writing `task` rows (a
// RowExclusiveLock lasts until the transaction ends).
const taskWriters = async () => {
  const { rows } = await sql<{ n: number }>`
    select count(*)::int as n from pg_locks l join pg_class c on c.oid = l.relation
    where c.relname = 'task' and l.mode = 'RowExclusiveLock' and l.pid <> pg_backend_pid()
      and l.database = (select oid from pg_database where datname = current_database())`.execute(stack.db);
  return rows[0]!.n;
};

const batchTasks = (batchId: string) =>
  stack.db.selectFrom("task").select(["id", "batchLine", "status", "upRatio", "n", "prompt"]).where("batchId", "=", batchId).orderBy("batchLine").execute();

describe("POST /v1/batches", () => {
  it("when an NDJSON body has bad lines, then each is reported with its line number and reason and the valid ones are accepted", async () => {
    const { key } = await stack.newAccount();
    const lines = [
      JSON.stringify({ image: imageUrl }),
      "{not json",
      JSON.stringify({ image: imageUrl, up_expansion_ratio: 5 }),
      "",
      JSON.stringify([1, 2]),
      JSON.stringify({ image: imageUrl, n: 3, prompt: "sky" }),
      JSON.stringify({ image: "data:image/png;base64,AAAA" }),
    ].join("\n");
    const answer = await postBatchStream(stack.api.url, key, lines, { query: "name=mixed&up_expansion_ratio=0.1&down_expansion_ratio=0.1&left_expansion_ratio=0.2&right_expansion_ratio=0.2" });
    expect(answer.status).toBe(201);
    expect(answer.body.intake).toMatchObject({ accepted: 2, rejected: 4 });
    expect([...new Set(answer.body.intake.errors.map((e: any) => e.line))]).toEqual([2, 3, 5, 7]);
    expect(answer.body.intake.errors[0].message).toMatch(/not valid JSON/);
    expect(answer.body.intake.errors[1]).toMatchObject({ field: "up_expansion_ratio", message: expect.stringMatching(/between 0 and 2/) });
    expect(answer.body.intake.errors.at(-1)).toMatchObject({ line: 7, field: "image", message: expect.stringMatching(/data: prefix/) });
    expect(answer.body).toMatchObject({ name: "mixed", status: "running", upload: "complete", items: { accepted: 2, rejected: 4, lines_read: 7 } });
    expect(answer.headers.location).toBe(`/v1/batches/${answer.body.id}`);
    const tasks = await batchTasks(answer.body.id);
    expect(tasks.map((t) => [t.batchLine, t.n, t.prompt, t.upRatio])).toEqual([
      [1, 1, null, 0.1],
      [6, 3, "sky", 0.1],
    ]);
  });

  it("when items name their images with input_name, then a valid name is kept with the task and shown in the manifest; a bad one is refused by line", async () => {
    const { key } = await stack.newAccount();
    const image = (await makeImage(400, 300)).toString("base64");
    const lines = [
      JSON.stringify({ image, input_name: "photos/p1.png" }),
      JSON.stringify({ image, input_name: "two\nlines.png" }),
      JSON.stringify({ image, input_name: "x".repeat(256) }),
      JSON.stringify({ image, input_name: 7 }),
      JSON.stringify({ image, input_name: null }),
      JSON.stringify({ image: imageUrl, input_name: "named-url.png" }),
    ].join("\n");
    const answer = await postBatchStream(stack.api.url, key, lines, { query: "up_expansion_ratio=0.1&down_expansion_ratio=0.1&left_expansion_ratio=0.2&right_expansion_ratio=0.2" });
    expect(answer.status).toBe(201);
    expect(answer.body.intake).toMatchObject({ accepted: 3, rejected: 3 });
    expect(answer.body.intake.errors).toEqual([
      { line: 2, field: "input_name", message: expect.stringMatching(/control characters/) },
      { line: 3, field: "input_name", message: "must be at most 255 characters" },
      { line: 4, field: "input_name", message: expect.stringMatching(/must be a string/) },
    ]);
    const manifest = await call(stack.api.url, "GET", `/v1/batches/${answer.body.id}/results`, { key });
    const rows = String(manifest.body).trim().split("\n").map((l: string) => JSON.parse(l));
    expect(rows.map((r: { line: number; input: string; input_name: string | null }) => [r.line, r.input, r.input_name])).toEqual([
      [1, "photos/p1.png", "photos/p1.png"],
      [5, "inline", null],
      [6, imageUrl, "named-url.png"],
    ]);
  });

  it("when a CSV body names its fields in a header row, then rows become tasks with batch defaults and per-row overrides", async () => {
    const { key } = await stack.newAccount();
    const csv = `image,up_expansion_ratio,prompt,n\n${imageUrl},,"a ""quoted"", prompt",2\n${imageUrl},0.3,,\n${imageUrl},x,,\n${imageUrl},0.1\n`;
    const answer = await postBatchStream(stack.api.url, key, csv, {
      contentType: "text/csv",
      query: "up_expansion_ratio=0.05&down_expansion_ratio=0&left_expansion_ratio=0.1&right_expansion_ratio=0.1&prompt=default",
    });
    expect(answer.status).toBe(201);
    expect(answer.body.intake).toMatchObject({ accepted: 2, rejected: 2 });
    expect(answer.body.intake.errors).toEqual([
      { line: 4, field: "up_expansion_ratio", message: expect.any(String) },
      { line: 5, field: "item", message: "has 2 fields; the header names 4" },
    ]);
    const tasks = await batchTasks(answer.body.id);
    expect(tasks.map((t) => [t.batchLine, t.upRatio, t.prompt, t.n])).toEqual([
      [2, 0.05, 'a "quoted", prompt', 2],
      [3, 0.3, "default", 1],
    ]);
  });

  it("when the JSON form is sent, then items take the defaults, and an unknown default or too many items is a 400", async () => {
    const { key } = await stack.newAccount();
    const answer = await call(stack.api.url, "POST", "/v1/batches", {
      key,
      body: { name: "json", defaults: { ...ratios, n: 2 }, items: [{ image: imageUrl }, { image: imageUrl, n: 1, external_task_id: "j-2" }] },
    });
    expect(answer.status).toBe(201);
    expect(answer.body).toMatchObject({ name: "json", source: "json", items: { accepted: 2, rejected: 0 } });
    expect((await batchTasks(answer.body.id)).map((t) => t.n)).toEqual([2, 1]);

    const unknown = await call(stack.api.url, "POST", "/v1/batches", { key, body: { defaults: { image: imageUrl }, items: [{ image: imageUrl }] } });
    expect(unknown.status).toBe(400);
    expect(unknown.body.errors[0].field).toBe("defaults");
    const tooMany = await call(stack.api.url, "POST", "/v1/batches", { key, body: { items: Array.from({ length: 10_001 }, () => ({})) } });
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.errors[0]).toMatchObject({ field: "items", message: expect.stringMatching(/at most 10000/) });
    const notObject = await call(stack.api.url, "POST", "/v1/batches", { key, rawBody: "[1]", headers: { "content-type": "application/json" } });
    expect(notObject.status).toBe(400);
  });

  it("when the body is of another type, encoded, or the query names an unknown parameter, then it is refused and nothing is created", async () => {
    const { key, accountId } = await stack.newAccount();
    const xml = await postBatchStream(stack.api.url, key, "<items/>", { contentType: "application/xml" });
    expect(xml.status).toBe(415);
    const gz = await postBatchStream(stack.api.url, key, "x", { headers: { "content-encoding": "gzip" } });
    expect(gz.status).toBe(415);
    const badQuery = await postBatchStream(stack.api.url, key, JSON.stringify({ image: imageUrl, ...ratios }), { query: "colour=blue" });
    expect(badQuery.status).toBe(400);
    const badRatio = await postBatchStream(stack.api.url, key, JSON.stringify({ image: imageUrl, ...ratios }), { query: "up_expansion_ratio=abc" });
    expect(badRatio.status).toBe(400);
    const noKey = await postBatchStream(stack.api.url, "wrong-key-0123456789", "{}");
    expect(noKey.status).toBe(401);
    // An empty upload, or a CSV of only its header, is refused rather than made an empty batch.
    for (const [body, contentType, query] of [["", "application/x-ndjson", ""], ["", "text/csv", ""], ["image,up_expansion_ratio\n", "text/csv", ""], ["", "application/x-ndjson", "atomic=true"]]) {
      const empty = await postBatchStream(stack.api.url, key, body!, { contentType, query });
      expect(empty.status, `${contentType} ${JSON.stringify(body)} ${query}`).toBe(400);
      expect(empty.body.errors).toEqual([{ field: "body", message: expect.stringMatching(/no items/) }]);
    }
    const batches = await stack.db.selectFrom("batch").select("id").where("accountId", "=", accountId).execute();
    expect(batches).toHaveLength(0);
  });

  it("when ?atomic=true and one item is bad, then nothing is created; when all are good, all are", async () => {
    const { key, accountId } = await stack.newAccount();
    const good = [...ndjsonLines(450, () => ({ image: imageUrl, ...ratios }))];
    const bad = [...good.slice(0, 420), JSON.stringify({ image: imageUrl, ...ratios, n: 12 }) + "\n", ...good.slice(420)].join("");
    const refused = await postBatchStream(stack.api.url, key, bad, { query: "atomic=true" });
    expect(refused.status).toBe(400);
    expect(refused.body.errors).toEqual([{ field: "line 421: n", message: expect.stringMatching(/from 1 to 9/) }]);
    expect(await stack.db.selectFrom("task").select("id").where("accountId", "=", accountId).execute()).toHaveLength(0);
    expect(await stack.db.selectFrom("batch").select("id").where("accountId", "=", accountId).execute()).toHaveLength(0);

    const accepted = await postBatchStream(stack.api.url, key, good.join(""), { query: "atomic=true" });
    expect(accepted.status).toBe(201);
    expect(accepted.body.items.accepted).toBe(450);
    expect(await batchTasks(accepted.body.id)).toHaveLength(450);
    // Their jobs were added after the commit (URL images: the source check comes first).
    const redis = new Redis(stack.env.redisUrl, { maxRetriesPerRequest: null });
    const sourceQueue = new Queue(bullQueueName("source"), { connection: redis, prefix: stack.env.queuePrefix });
    try {
      const ids = new Set((await sourceQueue.getJobs(["prioritized", "waiting"], 0, 10_000)).map((j) => j.id));
      expect((await batchTasks(accepted.body.id)).every((t) => ids.has(t.id))).toBe(true);
    } finally {
      await sourceQueue.close();
      redis.disconnect();
    }
  });

  it("when an upload breaks off mid-body, then the batch records exactly the lines it accepted; an atomic one leaves nothing", async () => {
    const { key, accountId } = await stack.newAccount();
    const breakOff = async (query: string) => {
      const req = request(new URL(`/v1/batches?${query}`, stack.api.url), {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/x-ndjson" },
      });
      req.on("error", () => undefined);
      let line = 0;
      const more = (n: number) => {
        let text = "";
        for (let i = 0; i < n; i++) text += `${JSON.stringify({ image: imageUrl, ...ratios, prompt: `line ${++line}` })}\n`;
        req.write(text);
      };
      more(1_000);
      // Half a line, then the socket goes.
      req.write('{"image": "http://half');
      return { req, more };
    };
    const plain = await breakOff("name=broken");
    const batch = await waitUntil(
      () => stack.db.selectFrom("batch").selectAll().where("accountId", "=", accountId).executeTakeFirst(),
      (b) => b !== undefined && b.acceptedItems >= 800,
      20_000,
      "first chunks committed",
    );
    plain.req.destroy();
    const ended = await waitUntil(
      () => stack.db.selectFrom("batch").selectAll().where("id", "=", batch!.id).executeTakeFirstOrThrow(),
      (b) => b.upload === "broken_off",
      20_000,
      "upload marked broken off",
    );
    const tasks = await batchTasks(ended.id);
    expect(tasks).toHaveLength(ended.acceptedItems);
    expect(tasks.map((t) => t.batchLine)).toEqual(Array.from({ length: ended.acceptedItems }, (_, i) => i + 1));
    expect(tasks.map((t) => t.prompt)).toEqual(tasks.map((t) => `line ${t.batchLine}`));
    expect(ended.linesRead).toBe(ended.acceptedItems);
    const view = await call(stack.api.url, "GET", `/v1/batches/${ended.id}`, { key });
    expect(view.body).toMatchObject({ upload: "broken_off", total: ended.acceptedItems, counts: { queued: ended.acceptedItems } });

    const { key: key2, accountId: account2 } = await stack.newAccount();
    const atomicReq = request(new URL("/v1/batches?atomic=true", stack.api.url), {
      method: "POST",
      headers: { authorization: `Bearer ${key2}`, "content-type": "application/x-ndjson" },
    });
    atomicReq.on("error", () => undefined);
    atomicReq.write([...ndjsonLines(1_000, () => ({ image: imageUrl, ...ratios }))].join(""));
    // Chunks of 200 are being written inside the open transaction when the socket goes: seen from
    // outside as its lock on `task`, held from its first chunk's insert until it commits or rolls
    // back (the body never ends, so it cannot commit). Nothing else writes tasks here meanwhile.
    await waitUntil(taskWriters, (n) => n > 0, 20_000, "the atomic upload writing tasks in its transaction");
    atomicReq.destroy();
    await waitUntil(taskWriters, (n) => n === 0, 20_000, "the atomic upload's transaction ended");
    expect(await stack.db.selectFrom("batch").select("id").where("accountId", "=", account2).execute()).toHaveLength(0);
    expect(await stack.db.selectFrom("task").select("id").where("accountId", "=", account2).execute()).toHaveLength(0);
  });
});

describe("streamed uploads at once", () => {
  it("when a process already reads BATCH_STREAMS_MAX streamed uploads, then one more is answered 503 with Retry-After and nothing is created; once one ends, the next is taken", async () => {
    const api = await stack.startApi({ BATCH_STREAMS_MAX: "1" });
    const { key, accountId } = await stack.newAccount();
    const line = () => `${JSON.stringify({ image: imageUrl, ...ratios })}\n`;
    // The first upload sends a line and stays open.
    const first = request(new URL("/v1/batches?name=slow", api.url), {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/x-ndjson" },
    });
    const firstAnswer = new Promise<number>((resolve, reject) => {
      first.on("response", (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      first.on("error", reject);
    });
    first.write(line());
    await waitUntil(
      () => stack.db.selectFrom("batch").select("id").where("accountId", "=", accountId).execute(),
      (rows) => rows.length === 1,
      10_000,
      "the first upload's batch",
    );

    const refused = await postBatchStream(api.url, key, ndjsonLines(200, () => ({ image: imageUrl, ...ratios })), { query: "name=second" });
    expect(refused.status).toBe(503);
    expect(Number(refused.headers["retry-after"])).toBeGreaterThan(0);
    expect(refused.body.detail).toMatch(/streamed batch uploads/);
    // A JSON batch is not a stream: it is taken meanwhile.
    const json = await call(api.url, "POST", "/v1/batches", { key, body: { name: "json", items: [{ image: imageUrl, ...ratios }] } });
    expect(json.status).toBe(201);

    first.end(line());
    expect(await firstAnswer).toBe(201);
    const third = await postBatchStream(api.url, key, ndjsonLines(3, () => ({ image: imageUrl, ...ratios })), { query: "name=third" });
    expect(third.status).toBe(201);
    const names = (await stack.db.selectFrom("batch").select("name").where("accountId", "=", accountId).execute()).map((b) => b.name);
    expect(names.sort()).toEqual(["json", "slow", "third"]);
  });
});

describe("dry run, spend cap, cancel, idempotency", () => {
  it("when ?dry_run=true, then it answers count, credits and an estimated duration and creates nothing", async () => {
    const { key, accountId } = await stack.newAccount();
    const body = [...ndjsonLines(30, (i) => ({ image: imageUrl, ...ratios, n: i % 3 === 0 ? 3 : 1 })), "{bad\n"].join("");
    const answer = await postBatchStream(stack.api.url, key, body, { query: "dry_run=true" });
    expect(answer.status).toBe(200);
    // 10 items of n=3 and 20 of n=1: 50 images, one credit each (CREDITS_PER_IMAGE=1).
    expect(answer.body).toMatchObject({ dry_run: true, items: 30, rejected: 1, credits: 50, images: 50, errors: [{ line: 31 }] });
    const { provider_slots, run_time_ms } = answer.body.capacity;
    expect(answer.body.estimated_duration_seconds).toBe(Math.ceil((Math.ceil(50 / provider_slots) * run_time_ms) / 1000));
    expect(answer.body.spend_cap).toBeNull();
    expect(await stack.db.selectFrom("batch").select("id").where("accountId", "=", accountId).execute()).toHaveLength(0);
    expect(await stack.db.selectFrom("task").select("id").where("accountId", "=", accountId).execute()).toHaveLength(0);
  });

  it("when a batch would take the account past its spend cap, then it is refused with a clear error; a dry run says so", async () => {
    const { key, accountId } = await stack.newAccount();
    await stack.db.updateTable("account").set({ spendCapCredits: 10 }).where("id", "=", accountId).execute();
    const items = Array.from({ length: 4 }, () => ({ image: imageUrl, ...ratios, n: 2 }));
    const first = await call(stack.api.url, "POST", "/v1/batches", { key, body: { items } });
    expect(first.status).toBe(201);
    // 8 committed; 4 more would make 12 > 10.
    const over = await call(stack.api.url, "POST", "/v1/batches", { key, body: { items: items.slice(0, 2) } });
    expect(over.status).toBe(402);
    expect(over.body.detail).toMatch(/costs 4 credits; with 8 spent or reserved the account would pass its spend cap of 10 credits; nothing was created/);
    const dry = await call(stack.api.url, "POST", "/v1/batches?dry_run=true", { key, body: { items: items.slice(0, 2) } });
    expect(dry.body.spend_cap).toEqual({ cap: 10, spent: 0, committed: 8, would_exceed: true });
    const atomic = await postBatchStream(stack.api.url, key, [...ndjsonLines(2, () => ({ image: imageUrl, ...ratios, n: 2 }))].join(""), { query: "atomic=true" });
    expect(atomic.status).toBe(402);
    // Streamed without atomic: the lines past the cap are refused, the others accepted.
    const streamed = await postBatchStream(stack.api.url, key, [...ndjsonLines(3, () => ({ image: imageUrl, ...ratios }))].join(""));
    expect(streamed.body.intake).toMatchObject({ accepted: 2, rejected: 1, spend_cap_reached: true, errors: [{ line: 3, field: "n" }] });
    expect(await stack.db.selectFrom("batch").select("id").where("accountId", "=", accountId).execute()).toHaveLength(2);
  });

  it("when a batch is canceled, then its queued tasks are canceled at once with an event each, and a worker never submits them", async () => {
    const { key } = await stack.newAccount();
    const inline = (await makeImage(300, 300)).toString("base64");
    const created = await postBatchStream(stack.api.url, key, [...ndjsonLines(40, () => ({ image: inline, ...ratios }))].join(""));
    expect(created.body.items.accepted).toBe(40);
    const id = created.body.id;
    const canceled = await call(stack.api.url, "POST", `/v1/batches/${id}/cancel`, { key });
    expect(canceled.status).toBe(200);
    expect(canceled.body).toMatchObject({ status: "canceled", canceled_now: 40, counts: { canceled: 40, queued: 0 }, percent: 100 });
    expect(canceled.body.canceled_at).toEqual(expect.any(String));
    const tasks = await stack.db.selectFrom("task").select(["id", "status"]).where("batchId", "=", id).execute();
    const events = await stack.db.selectFrom("taskEvent").select(["fromStatus", "toStatus"]).where("taskId", "in", tasks.map((t) => t.id)).where("toStatus", "=", "canceled").execute();
    expect(events).toHaveLength(40);
    expect(events.every((e) => e.fromStatus === "queued")).toBe(true);
    // A worker now takes their submit jobs: they end without reaching the provider.
    const redis = new Redis(stack.env.redisUrl, { maxRetriesPerRequest: null });
    const submitQueue = new Queue(bullQueueName("submit"), { connection: redis, prefix: stack.env.queuePrefix });
    const worker = await stack.startWorker();
    try {
      await waitUntil(
        () => Promise.all(tasks.map(async (t) => (await submitQueue.getJob(t.id))?.getState() ?? "missing")),
        (states) => states.every((s) => s === "completed"),
        20_000,
        "submit jobs completed",
      );
    } finally {
      await worker.stop();
      await submitQueue.close();
      redis.disconnect();
    }
    const atProvider = await (await fetch(`${stack.simulator.url}/_sim/tasks`)).text();
    for (const t of tasks) expect(atProvider).not.toContain(t.id);
    const after = await stack.db.selectFrom("task").select("status").where("batchId", "=", id).execute();
    expect(after.every((t) => t.status === "canceled")).toBe(true);
    const retry = await call(stack.api.url, "POST", `/v1/batches/${id}/retry`, { key });
    expect(retry.status).toBe(409);
  });

  it("when an Idempotency-Key is reused, then the same body replays the first answer, another body is a 422, one in flight is a 409", async () => {
    const { key, accountId } = await stack.newAccount();
    const body = { image: imageUrl, ...ratios };
    const headers = { "idempotency-key": "create-1" };
    const first = await call(stack.api.url, "POST", "/v1/tasks", { key, body, headers });
    expect(first.status).toBe(202);
    const again = await call(stack.api.url, "POST", "/v1/tasks", { key, body: { ...ratios, image: imageUrl }, headers });
    expect(again.status).toBe(202);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(again.body.id).toBe(first.body.id);
    const other = await call(stack.api.url, "POST", "/v1/tasks", { key, body: { ...body, prompt: "other" }, headers });
    expect(other.status).toBe(422);
    expect(await stack.db.selectFrom("task").select("id").where("accountId", "=", accountId).execute()).toHaveLength(1);
    // Another account's same key is its own.
    const { key: otherKey } = await stack.newAccount();
    expect((await call(stack.api.url, "POST", "/v1/tasks", { key: otherKey, body, headers })).body.id).not.toBe(first.body.id);
    const bad = await call(stack.api.url, "POST", "/v1/tasks", { key, body, headers: { "idempotency-key": "é".repeat(3) } });
    expect(bad.status).toBe(400);

    // Streamed batches: replay, mismatch, and a key in flight while its upload is still arriving.
    const ndjson = [...ndjsonLines(5, () => body)].join("");
    const b1 = await postBatchStream(stack.api.url, key, ndjson, { headers: { "idempotency-key": "batch-1" } });
    expect(b1.status).toBe(201);
    const b2 = await postBatchStream(stack.api.url, key, ndjson, { headers: { "idempotency-key": "batch-1" } });
    expect(b2.status).toBe(201);
    expect(b2.headers["idempotent-replayed"]).toBe("true");
    expect(b2.body.id).toBe(b1.body.id);
    const b3 = await postBatchStream(stack.api.url, key, ndjson + ndjson, { headers: { "idempotency-key": "batch-1" } });
    expect(b3.status).toBe(422);

    const slow = request(new URL("/v1/batches", stack.api.url), {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/x-ndjson", "idempotency-key": "batch-2" },
    });
    slow.on("error", () => undefined);
    const slowAnswer = new Promise<number>((resolve) => slow.on("response", (res) => (res.resume(), resolve(res.statusCode ?? 0))));
    slow.write(ndjson);
    await waitUntil(
      () => stack.db.selectFrom("idempotencyKey").select("state").where("accountId", "=", accountId).where("key", "=", "batch-2").executeTakeFirst(),
      (row) => row?.state === "in_flight",
    );
    const busy = await postBatchStream(stack.api.url, key, ndjson, { headers: { "idempotency-key": "batch-2" } });
    expect(busy.status).toBe(409);
    // While its upload is still arriving, the batch says so; canceled then, the upload stops with a 409.
    const receiving = await waitUntil(
      () => stack.db.selectFrom("batch").select("id").where("accountId", "=", accountId).where("upload", "=", "receiving").executeTakeFirst(),
      (row) => row !== undefined,
    );
    // No chunk committed yet (5 lines of a 1,000-item chunk): nothing done, not 100% done.
    expect((await call(stack.api.url, "GET", `/v1/batches/${receiving!.id}`, { key })).body).toMatchObject({ status: "receiving", total: 0, percent: 0 });
    expect((await call(stack.api.url, "POST", `/v1/batches/${receiving!.id}/cancel`, { key })).body).toMatchObject({ status: "canceled", upload: "broken_off" });
    slow.end();
    expect(await slowAnswer).toBe(409);
    const batches = await stack.db.selectFrom("batch").select("id").where("accountId", "=", accountId).execute();
    expect(batches).toHaveLength(2);
  });
});
