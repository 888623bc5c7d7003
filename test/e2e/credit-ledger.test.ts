import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ndjsonLines, postBatchStream, waitUntil } from "../support/batches.ts";
import { call, waitForTask } from "../support/http.ts";
import { makeImage } from "../support/images.ts";
import { startStack, type Stack } from "../support/stack.ts";

// The credit ledger through the public API: the cap under concurrent intake from two API processes,
// settlement, the usage routes, final_unit_deduction of failed and canceled tasks, the capacity
// check and the replay window.
let stack: Stack;
let inline: string;
const ratios = { up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1 };

beforeAll(async () => {
  // Capacity 8 everywhere: n = 9 fits no route.
  stack = await startStack({ apiEnv: { BATCH_CHUNK_ITEMS: "5", PROVIDER_CAPACITY: "8" }, workerEnv: { PROVIDER_CAPACITY: "8" }, simulatorEnv: { SIM_CAPACITY: "8" } });
  inline = (await makeImage(300, 300)).toString("base64");
});
afterAll(async () => {
  await stack?.stop();
});

const ledger = async (accountId: string) => {
  // (The db's CamelCasePlugin names the columns.) The account's reserved is its balance row's plus
  // its hold stripes' (credit-ledger.ts: holds without a cap go to the stripes).
  const row = await sql<{ spent: string; reserved: string; entriesSpent: string; entriesReserved: string }>`
    select b.spent, b.reserved + coalesce((select sum(reserved) from credit_hold_stripe where account_id = b.account_id), 0) as reserved,
      (select coalesce(sum(settled), 0) from credit_entry where account_id = b.account_id and state = 'settled') as entries_spent,
      (select coalesce(sum(reserved), 0) from credit_entry where account_id = b.account_id and state = 'reserved') as entries_reserved
    from credit_balance b where b.account_id = ${accountId}::uuid`.execute(stack.db);
  const r = row.rows[0];
  return r
    ? { spent: Number(r.spent), reserved: Number(r.reserved), entriesSpent: Number(r.entriesSpent), entriesReserved: Number(r.entriesReserved) }
    : { spent: 0, reserved: 0, entriesSpent: 0, entriesReserved: 0 };
};

const setSim = (patch: Record<string, unknown>) => call(stack.simulator.url, "PATCH", "/_sim/config", { body: patch });

describe("the spend cap", () => {
  it("when two batches go to two API processes at once with single creates beside them, then spent + reserved never passes the cap, sampled every 100 ms through the run", async () => {
    const { key, accountId } = await stack.newAccount();
    const cap = 20;
    await stack.db.updateTable("account").set({ spendCapCredits: cap }).where("id", "=", accountId).execute();
    const second = await stack.startApi();
    const samples: number[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const l = await ledger(accountId);
        samples.push(l.spent + l.reserved);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    // 2 x 16 credits of batch items (n = 1..3) and 6 singles of n = 2: 44 credits asked for, 20 allowed.
    const batch = (i: number) => ({ image: inline, ...ratios, n: (i % 3) + 1 });
    const singles = Array.from({ length: 6 }, (_, i) =>
      call(i % 2 === 0 ? stack.api.url : second.url, "POST", "/v1/tasks", { key, body: { image: inline, ...ratios, n: 2, prompt: `single ${i}` } }),
    );
    const [a, b, ...answers] = await Promise.all([
      postBatchStream(stack.api.url, key, [...ndjsonLines(8, batch)].join("")),
      postBatchStream(second.url, key, [...ndjsonLines(8, batch)].join("")),
      ...singles,
    ]);
    sampling = false;
    await sampler;

    const acceptedSingles = answers.filter((s) => s.status === 202).length;
    const refusedSingles = answers.filter((s) => s.status === 402);
    expect(acceptedSingles + refusedSingles.length).toBe(6);
    for (const r of refusedSingles) expect(r.body.detail).toMatch(/spend cap of 20 credits/);
    expect(a.status).toBe(201);
    expect(b.status).toBe(201);
    // What was accepted is what the ledger holds or charged: exactly the credits of the tasks written.
    const tasks = await stack.db.selectFrom("task").select(["n"]).where("accountId", "=", accountId).execute();
    const written = tasks.reduce((sum, t) => sum + t.n, 0);
    expect(written).toBeLessThanOrEqual(cap);
    // The cap was binding: more was asked for than it allows, and something was refused.
    expect(refusedSingles.length + a.body.intake.rejected + b.body.intake.rejected).toBeGreaterThan(0);
    for (const refused of [...a.body.intake.errors, ...b.body.intake.errors]) expect(refused).toMatchObject({ field: "n", message: expect.stringMatching(/spend cap/) });
    expect(samples.length).toBeGreaterThan(0);
    expect(Math.max(...samples)).toBeLessThanOrEqual(cap);

    // Every accepted task ends and settles: the holds become charges, and nothing is left held.
    const settled = await waitUntil(() => ledger(accountId), (l) => l.reserved === 0, 20_000, "every hold settled");
    expect(settled.spent).toBe(written);
    expect(settled).toMatchObject({ entriesSpent: settled.spent, entriesReserved: 0 });

    const usage = await call(stack.api.url, "GET", "/v1/account/usage", { key });
    expect(usage.status).toBe(200);
    expect(usage.body).toMatchObject({ unit: "credits", cap, spent: written, reserved: 0, available: cap - written, period: { spent: written } });
    expect(usage.body.by_route).toEqual([expect.objectContaining({ route: "default", spent: written, reserved: 0 })]);
    expect(usage.body.by_day).toHaveLength(1);
    expect(usage.body.by_day[0]).toMatchObject({ day: new Date().toISOString().slice(0, 10), spent: written, tasks: tasks.length });

    // /metrics: the ledger by route, every account (this file's other tests may add to it).
    const metrics = await (await fetch(`${stack.api.url}/metrics`)).text();
    const settledMetric = Number(/^kling_credits_settled\{route="default"\} (\S+)$/m.exec(metrics)?.[1]);
    expect(settledMetric).toBeGreaterThanOrEqual(written);
    expect(metrics).toMatch(/^kling_credits_reserved\{route="default"\} \S+$/m);

    const costs = await call(stack.api.url, "GET", `/account/costs?start_time=${Date.now() - 3_600_000}&end_time=${Date.now() + 60_000}`, { key });
    expect(costs.status).toBe(200);
    expect(costs.body).toMatchObject({
      code: 0,
      data: {
        code: 0,
        resource_pack_subscribe_infos: [{ resource_pack_type: "decreasing_total", total_quantity: cap, remaining_quantity: cap - written, status: cap > written ? "online" : "runOut" }],
        consumption: { spent: written, reserved: 0, tasks: tasks.length },
      },
    });
  }, 60_000);
});

describe("usage routes", () => {
  it("when a period or window is malformed or the key is missing, then each route refuses in its own shape", async () => {
    const { key } = await stack.newAccount();
    const bad = await call(stack.api.url, "GET", "/v1/account/usage?from=2026-13-01", { key });
    expect(bad.status).toBe(400);
    expect(bad.body.errors[0].field).toBe("from");
    const reversed = await call(stack.api.url, "GET", "/v1/account/usage?from=2026-12-02&to=2026-12-01", { key });
    expect(reversed.status).toBe(400);
    expect(reversed.body.errors).toEqual([{ field: "to", message: "must be after from" }]);
    const noWindow = await call(stack.api.url, "GET", "/account/costs", { key });
    expect(noWindow.status).toBe(400);
    expect(noWindow.body).toMatchObject({ code: 1201, request_id: expect.any(String) });
    const noKey = await call(stack.api.url, "GET", "/account/costs?start_time=0&end_time=1");
    expect(noKey.status).toBe(401);
    expect(noKey.body.code).toBe(1001);
    // No cap: no pack, as a pay-as-you-go Kling account; the usage says so too.
    const open = await call(stack.api.url, "GET", "/account/costs?start_time=0&end_time=1", { key });
    expect(open.body.data.resource_pack_subscribe_infos).toEqual([]);
    const usage = await call(stack.api.url, "GET", "/v1/account/usage?from=2026-01-01&to=2026-02-01", { key });
    expect(usage.body).toMatchObject({ cap: null, available: null, spent: 0, reserved: 0, period: { from: "2026-01-01T00:00:00.000Z", spent: 0 }, by_day: [] });
  });
});

describe("final_unit_deduction of tasks that were not charged", () => {
  it("when the provider fails a task, then both views answer \"0\" and its hold is released, not charged", async () => {
    const { key, accountId } = await stack.newAccount();
    await setSim({ fail_rate: 1 });
    try {
      const created = await call(stack.api.url, "POST", "/kling/v1/images/editing/expand", { key, body: { image: inline, ...ratios, n: 2 } });
      expect(created.status).toBe(200);
      const id = created.body.data.task_id;
      const failed = await waitForTask(stack.api.url, key, id, ["failed", "succeeded"]);
      expect(failed.status).toBe("failed");
      expect(failed.provider.final_unit_deduction).toBe("0");
      const dropin = await call(stack.api.url, "GET", `/kling/v1/images/editing/expand/${id}`, { key });
      expect(dropin.body.data).toMatchObject({ task_status: "failed", final_unit_deduction: "0" });
      const entries = await stack.db.selectFrom("creditEntry").select(["state", "reserved", "settled"]).where("taskId", "=", id).execute();
      expect(entries.map((e) => ({ state: e.state, reserved: Number(e.reserved), settled: Number(e.settled) }))).toEqual([{ state: "released", reserved: 2, settled: 0 }]);
      expect(await ledger(accountId)).toMatchObject({ spent: 0, reserved: 0 });
    } finally {
      await setSim({ fail_rate: 0 });
    }
  });

  it("when a batch is canceled before its tasks ran, then they answer \"0\" and their holds are released", async () => {
    const { key, accountId } = await stack.newAccount();
    // The provider refuses every call, so the tasks wait in the queue until canceled.
    await setSim({ route_unavailable: true });
    try {
      const created = await postBatchStream(stack.api.url, key, [...ndjsonLines(3, () => ({ image: inline, ...ratios, n: 1 }))].join(""));
      expect(created.status).toBe(201);
      expect((await ledger(accountId)).reserved).toBe(3);
      const canceled = await call(stack.api.url, "POST", `/v1/batches/${created.body.id}/cancel`, { key });
      expect(canceled.status).toBe(200);
      // A task whose create was in flight at the cancel (refused: the route is unavailable) is
      // canceled when it comes back to the queue, so all three end canceled.
      const tasks = await waitUntil(
        () => stack.db.selectFrom("task").select(["id", "status"]).where("batchId", "=", created.body.id).execute(),
        (rows) => rows.length === 3 && rows.every((t) => t.status === "canceled"),
        30_000,
        "every task of the canceled batch canceled",
      );
      for (const t of tasks) {
        const dropin = await call(stack.api.url, "GET", `/kling/v1/images/editing/expand/${t.id}`, { key });
        expect(dropin.body.data.final_unit_deduction).toBe("0");
        const native = await call(stack.api.url, "GET", `/v1/tasks/${t.id}`, { key });
        expect(native.body.provider.final_unit_deduction).toBe("0");
      }
      // The cancel's bulk move settles through the sweep until it goes through the transition function.
      const canceledIds = tasks.filter((t) => t.status === "canceled").map((t) => t.id);
      const entries = await waitUntil(
        () => stack.db.selectFrom("creditEntry").select(["state", "settled"]).where("taskId", "in", canceledIds).execute(),
        (rows) => rows.every((r) => r.state === "released"),
        20_000,
        "holds of the canceled tasks released",
      );
      expect(entries.map((e) => Number(e.settled))).toEqual(canceledIds.map(() => 0));
      const l = await ledger(accountId);
      expect(l).toMatchObject({ spent: 0, reserved: 3 - canceledIds.length, entriesReserved: 3 - canceledIds.length });
    } finally {
      await setSim({ route_unavailable: false });
    }
  });
});

describe("intake checks", () => {
  it("when n is above every route's capacity, then a single create is a 400 in both shapes and a batch reports the line", async () => {
    const { key, accountId } = await stack.newAccount();
    const native = await call(stack.api.url, "POST", "/v1/tasks", { key, body: { image: inline, ...ratios, n: 9 } });
    expect(native.status).toBe(400);
    expect(native.headers.get("content-type")).toMatch(/application\/problem\+json/);
    expect(native.body.errors).toEqual([{ field: "n", message: expect.stringMatching(/^is 9, above the capacity of every configured provider route \(the largest holds 8/) }]);
    const dropin = await call(stack.api.url, "POST", "/v1/images/editing/expand", { key, body: { image: inline, ...ratios, n: 9 } });
    expect(dropin.status).toBe(400);
    expect(dropin.body).toMatchObject({ code: 1201, message: expect.stringMatching(/n: is 9, above the capacity of every configured provider route/) });
    const batch = await postBatchStream(stack.api.url, key, [...ndjsonLines(3, (i) => ({ image: inline, ...ratios, n: i === 2 ? 9 : 8 }))].join(""));
    expect(batch.status).toBe(201);
    expect(batch.body.intake).toMatchObject({ accepted: 2, rejected: 1, errors: [{ line: 2, field: "n", message: expect.stringMatching(/above the capacity/) }] });
    expect(await stack.db.selectFrom("task").select("n").where("accountId", "=", accountId).execute()).toEqual([{ n: 8 }, { n: 8 }]);
  });

  it("when the replay window is off (the default), on for the account, or on by default in another API process, then identical creates without external_task_id make two tasks, answer the first, and answer the first", async () => {
    const body = { image: inline, ...ratios, prompt: "replay me" };
    const { key, accountId } = await stack.newAccount();
    const first = await call(stack.api.url, "POST", "/v1/tasks", { key, body });
    const again = await call(stack.api.url, "POST", "/v1/tasks", { key, body });
    expect([first.status, again.status]).toEqual([202, 202]);
    expect(again.body.id).not.toBe(first.body.id);
    expect(again.headers.get("replayed-by")).toBeNull();

    await stack.db.updateTable("account").set({ replayWindowSeconds: 60 }).where("id", "=", accountId).execute();
    const replayed = await call(stack.api.url, "POST", "/v1/tasks", { key, body });
    expect(replayed.status).toBe(202);
    expect(replayed.body.id).toBe(again.body.id);
    expect(replayed.headers.get("replayed-by")).toBe("window");
    expect(replayed.headers.get("idempotent-replayed")).toBe("true");
    // Drop-in: the provider's answer for the same task, with the same headers.
    const dropin = await call(stack.api.url, "POST", "/v1/images/editing/expand", { key, body });
    expect(dropin.body.data.task_id).toBe(again.body.id);
    expect(dropin.headers.get("replayed-by")).toBe("window");
    // Another body, or an external_task_id, is not a replay.
    const other = await call(stack.api.url, "POST", "/v1/tasks", { key, body: { ...body, prompt: "another" } });
    expect([other.body.id, other.headers.get("replayed-by")]).not.toContain(again.body.id);
    const withId = await call(stack.api.url, "POST", "/v1/tasks", { key, body: { ...body, external_task_id: "mine-1" } });
    expect(withId.body.id).not.toBe(again.body.id);
    expect(withId.headers.get("replayed-by")).toBeNull();
    expect(await stack.db.selectFrom("task").select("id").where("accountId", "=", accountId).execute()).toHaveLength(4);

    // The installation's default (REPLAY_WINDOW_SECONDS) for accounts without their own; 0 turns it off.
    const withDefault = await stack.startApi({ REPLAY_WINDOW_SECONDS: "60" });
    const fresh = await stack.newAccount();
    const one = await call(withDefault.url, "POST", "/v1/tasks", { key: fresh.key, body });
    const two = await call(withDefault.url, "POST", "/v1/tasks", { key: fresh.key, body });
    expect(two.body.id).toBe(one.body.id);
    expect(two.headers.get("replayed-by")).toBe("window");
    await stack.db.updateTable("account").set({ replayWindowSeconds: 0 }).where("id", "=", fresh.accountId).execute();
    const three = await call(withDefault.url, "POST", "/v1/tasks", { key: fresh.key, body });
    expect(three.body.id).not.toBe(one.body.id);
  });
});
