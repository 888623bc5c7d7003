import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call } from "../support/http.ts";
import { eventually, getTask, resultSize, settle, submitMany, submitTask, taskEvents, testImage } from "../support/fault-kit.ts";
import { createCallsAt, expectEachRunOnce, routeAdmin, routeView, startRoutesStack, type RoutesStack } from "../support/routes-kit.ts";

// Several routes to the provider (PROVIDER_ROUTES), each a simulator of its own: when one cannot
// take work, tasks go another way, and every task is still created (and paid for) exactly once.

beforeAll(async () => {
  await testImage();
});

describe("the CometAPI route answers 404 from the start", () => {
  let routes: RoutesStack;
  beforeAll(async () => {
    routes = await startRoutesStack({
      routes: [
        { name: "comet", kind: "cometapi", capacity: 3, priority: 1, unitPrice: 0.5, simulatorEnv: { SIM_ROUTE_UNAVAILABLE: "true" } },
        { name: "kling", kind: "kling", capacity: 3, priority: 2, unitPrice: 0.25 },
      ],
    });
  });
  afterAll(() => routes?.stop());

  it("when the preferred route is gone, then its circuit opens and every task completes once on the Kling route, at its price, with the refusal in its history", { timeout: 90_000 }, async () => {
    const { key } = await routes.stack.newAccount();
    const tasks = await submitMany(routes.stack, key, 6, (i) => ({ n: i % 2 === 0 ? 1 : 2 }));
    const done = await settle(routes.stack, tasks, 40_000);
    for (const task of done) {
      expect(task.status, `task ${task.id}: ${task.status_message}`).toBe("succeeded");
      expect(task.images[0]).toMatchObject(resultSize);
      expect(task.provider).toMatchObject({ route: "kling", unit_price: 0.25 });
    }
    const { ranOn } = await expectEachRunOnce(routes, tasks);
    expect(new Set(Object.values(ranOn))).toEqual(new Set(["kling"]));
    expect((await routeAdmin(routes, "comet").stats()).tasks_created).toBe(0);
    for (const task of tasks) expect(await createCallsAt(routes, "kling", task.id), `task ${task.id}`).toBe(1);
    expect(await routeView(routes, "comet")).toMatchObject({ state: "open" });
    expect(await routeView(routes, "kling")).toMatchObject({ state: "closed" });

    // The tasks that met the 404 say so in their history: an attempt on comet, refused, then kling.
    const histories = await Promise.all(tasks.map((t) => taskEvents(routes.stack, t)));
    const refusedAtComet = histories.filter((events) =>
      events.some((e) => e.from === "submitting" && e.to === "queued" && e.detail?.route === "comet" && /404/.test(String(e.detail?.refused))),
    );
    expect(refusedAtComet.length).toBeGreaterThan(0);
    for (const events of histories) expect(events.filter((e) => e.to === "submitting").at(-1)?.detail?.route).toBe("kling");

    // Costs by route: six tasks, Σn = 9 slot-tasks at 0.25 on kling; nothing on comet.
    const summary = await call(routes.stack.api.url, "GET", "/v1/provider/routes", { key });
    expect(summary.status).toBe(200);
    const byName = Object.fromEntries((summary.body.data as { name: string }[]).map((r) => [r.name, r]));
    expect(byName.kling).toMatchObject({ tasks: 6, succeeded: 6, slot_tasks: 9, cost: 2.25, state: { state: "closed" } });
    expect(byName.comet).toMatchObject({ tasks: 0, cost: null, state: { state: "open" } });
  });
});

describe("the preferred route goes down mid-run, then recovers", () => {
  let routes: RoutesStack;
  beforeAll(async () => {
    routes = await startRoutesStack({
      routes: [
        { name: "kling", kind: "kling", capacity: 2, priority: 1 },
        { name: "backup", kind: "cometapi", capacity: 2, priority: 2 },
      ],
      env: { CIRCUIT_OPEN_MS: "500", CIRCUIT_FAILURE_THRESHOLD: "2" },
    });
  });
  afterAll(() => routes?.stop());

  it("when the Kling route answers 404 mid-run, then waiting tasks flow to the other route, and once it is back traffic returns to it; nothing runs twice", { timeout: 90_000 }, async () => {
    const { key } = await routes.stack.newAccount();
    const before = await submitMany(routes.stack, key, 4);
    await settle(routes.stack, before, 40_000);

    await routeAdmin(routes, "kling").patch({ route_unavailable: true });
    const during = await submitMany(routes.stack, key, 6);
    await eventually("kling's circuit open on /readyz", async () => ((await routeView(routes, "kling"))?.state === "open" ? true : undefined));
    const duringDone = await settle(routes.stack, during, 40_000);
    for (const task of duringDone) expect(task.status, `task ${task.id}: ${task.status_message}`).toBe("succeeded");
    const { ranOn: duringRan } = await expectEachRunOnce(routes, during);
    expect(new Set(Object.values(duringRan))).toEqual(new Set(["backup"]));

    await routeAdmin(routes, "kling").patch({ route_unavailable: false });
    // A probe closes the circuit within CIRCUIT_OPEN_MS of the next task; tasks trickle in meanwhile.
    const after: { id: string; key: string; n: number }[] = [];
    await eventually(
      "a task run on kling again",
      async () => {
        const task = await submitTask(routes.stack, key);
        after.push(task);
        const [done] = await settle(routes.stack, [task], 40_000);
        return done.provider.route === "kling" ? true : undefined;
      },
      20_000,
      100,
    );
    expect(await routeView(routes, "kling")).toMatchObject({ state: "closed" });
    const all = [...before, ...during, ...after];
    for (const task of await settle(routes.stack, all)) expect(task.status).toBe("succeeded");
    await expectEachRunOnce(routes, all);
  });
});

describe("a create answer lost on route A, then A's circuit opens", () => {
  let routes: RoutesStack;
  beforeAll(async () => {
    routes = await startRoutesStack({
      routes: [
        // B is preferred but answers 404 at first, so the first task goes to A.
        { name: "b", kind: "cometapi", capacity: 2, priority: 1, simulatorEnv: { SIM_ROUTE_UNAVAILABLE: "true" } },
        // Without callbacks, what became of a create is only learnt by asking.
        { name: "a", kind: "kling", capacity: 2, priority: 2, simulatorEnv: { SIM_CALLBACK_LOSS: "1", SIM_CONNECTION_FAULT_POINT: "after_create" } },
      ],
      env: { CIRCUIT_OPEN_MS: "300", CALLBACK_GRACE_MS: "300", POLL_MAX_INTERVAL_MS: "500" },
      // The retry after the lost answer comes 1-2 s later: time to take route A down first.
      workerEnv: { SUBMIT_RETRY_BASE_MS: "2000", PROVIDER_TIMEOUT_MS: "2000" },
    });
  });
  afterAll(() => routes?.stop());

  it("when A may hold the task, then it waits for A even with the preferred route B free, never goes to B, and A's lookup settles it once A answers again", { timeout: 90_000 }, async () => {
    const { key } = await routes.stack.newAccount();
    const a = routeAdmin(routes, "a");
    const b = routeAdmin(routes, "b");
    await a.patch({ drop_connection_rate: 1 });
    const lost = await submitTask(routes.stack, key);
    await eventually("the task created at A, its answer lost", async () =>
      (await a.tasks()).some((t) => t.external_task_id === lost.id) ? true : undefined,
    );
    // A goes down; the preferred route B comes back and takes every other task.
    await a.patch({ drop_connection_rate: 0, route_unavailable: true });
    await b.patch({ route_unavailable: false });
    const others = await submitMany(routes.stack, key, 3);
    for (const task of await settle(routes.stack, others, 20_000)) expect(task).toMatchObject({ status: "succeeded", provider: { route: "b" } });

    // The lost one keeps waiting for A, saying so.
    const waiting = await eventually("the lost task waiting on A's open circuit", async () => {
      const view = await getTask(routes.stack, lost);
      return /route a circuit open/.test(view.status_message) ? view : undefined;
    });
    expect(waiting).toMatchObject({ status: "submitting", provider: { route: "a" } });
    // Several of A's probes (lookups for the lost task) fail meanwhile; it never reaches B.
    const attemptsBefore = (await getTask(routes.stack, lost)).attempts as number;
    await eventually("two more failed probes of A", async () => ((await getTask(routes.stack, lost)).attempts >= attemptsBefore + 2 ? true : undefined));
    expect(await createCallsAt(routes, "b", lost.id)).toBe(0);
    expect((await getTask(routes.stack, lost)).status).toBe("submitting");

    await a.patch({ route_unavailable: false });
    const [done] = await settle(routes.stack, [lost], 40_000);
    expect(done).toMatchObject({ status: "succeeded", provider: { route: "a" } });
    expect(await createCallsAt(routes, "a", lost.id)).toBe(1);
    expect(await createCallsAt(routes, "b", lost.id)).toBe(0);
    const events = await taskEvents(routes.stack, lost);
    expect(events.some((e) => e.detail?.adopted === true && e.detail?.route === "a")).toBe(true);
    // Its first attempts met B's 404 and left B; from the lost answer on, every attempt was on A.
    const attempts = events.filter((e) => e.to === "submitting").map((e) => e.detail?.route);
    const firstOnA = attempts.indexOf("a");
    expect(firstOnA).toBeGreaterThan(0);
    expect(attempts.slice(0, firstOnA).every((route) => route === "b")).toBe(true);
    expect(attempts.slice(firstOnA).every((route) => route === "a")).toBe(true);
    await expectEachRunOnce(routes, [lost, ...others]);
  });
});
