import { afterEach, beforeAll, describe, expect, it } from "vitest";
import type { RunningSimulator } from "../../apps/simulator/simulator.server.ts";
import {
  adminApi,
  isTerminalIn,
  makeTestImage,
  providerApi,
  randomToken,
  startCallbackReceiver,
  startTestSimulator,
  statusesOf,
  validBody,
} from "./sim-test-kit.ts";

let image: string;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  image = (await makeTestImage()).toString("base64");
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

// Each test gets its own simulator and receiver, since faults are simulator-wide settings.
const setup = async (env: Record<string, string>) => {
  const sim = await startTestSimulator(env);
  const receiver = await startCallbackReceiver();
  cleanups.push(() => sim.stop(), () => receiver.stop());
  return { sim, receiver, api: providerApi(sim, randomToken()) };
};

describe("route and error faults", () => {
  it("when the route is unavailable, then every provider call in both families answers 404 {code: null, message: '404'}", async () => {
    const { sim } = await setup({ SIM_ROUTE_UNAVAILABLE: "true" });
    for (const family of ["", "/kling"] as const) {
      const api = providerApi(sim, randomToken(), family);
      for (const answer of [await api.create(validBody(image)), await api.get("123"), await api.list()]) {
        expect(answer.status).toBe(404);
        expect(answer.body).toEqual({ code: null, message: "404" });
      }
    }
    expect((await adminApi(sim).patch({ route_unavailable: false })).status).toBe(200);
    expect((await providerApi(sim, randomToken()).create(validBody(image))).status).toBe(200);
  });

  it("when error_rate is 1, then creates and gets answer transient codes with their documented statuses", async () => {
    const { sim, api } = await setup({ SIM_ERROR_RATE: "1" });
    const statusOf: Record<number, number> = { 1302: 429, 1303: 429, 5000: 500, 5001: 503, 5002: 504 };
    const answers = [];
    for (let i = 0; i < 12; i += 1) answers.push(await api.create(validBody(image)), await api.get("1"));
    for (const answer of answers) {
      expect(Object.keys(statusOf).map(Number)).toContain(answer.body.code);
      expect(answer.status).toBe(statusOf[answer.body.code as number]);
      expect(answer.body.request_id).toEqual(expect.any(String));
    }
    expect((await adminApi(sim).stats()).body).toMatchObject({ tasks_created: 0, errors_injected: 24 });
  });

  it("when two simulators share SIM_SEED, then the n-th call meets the same answer on both; another seed differs", async () => {
    const codesOf = async (seed: string) => {
      const { api } = await setup({ SIM_ERROR_RATE: "0.5", SIM_SEED: seed });
      const codes = [];
      for (let i = 0; i < 16; i += 1) codes.push((await api.get("1")).body.code as number);
      return codes;
    };
    const first = await codesOf("8");
    expect(await codesOf("8")).toEqual(first);
    // Some calls met an error and some got through (1203: no such task).
    expect(first).toContain(1203);
    expect(first.some((code) => code !== 1203)).toBe(true);
    expect(await codesOf("9")).not.toEqual(first);
  });

  it("when a create's connection is dropped after the task was made, then the client sees a reset and the task exists", async () => {
    const { sim, api } = await setup({ SIM_DROP_CONNECTION_RATE: "1", SIM_RUN_MS: "5000" });
    const body = validBody(image);
    await expect(api.create(body)).rejects.toThrow();
    await adminApi(sim).patch({ drop_connection_rate: 0 });
    const found = await api.get(body.external_task_id);
    expect(found.status).toBe(200);
    expect(found.body.data.task_info.external_task_id).toBe(body.external_task_id);
  });

  it("when a create times out before the task was made, then the client's timeout fires and no task exists", async () => {
    const { sim, api } = await setup({ SIM_TIMEOUT_RATE: "1", SIM_CONNECTION_FAULT_POINT: "before_create" });
    // The client's timeout fires once the simulator has counted (and is holding) the call, not on a
    // 200 ms clock: under load such a timer fired before the server had read the request, so nothing
    // was counted or held.
    const clientTimeout = new AbortController();
    let settled = false;
    const outcome = api.raw(`${sim.url}/v1/images/editing/expand`, { method: "POST", body: JSON.stringify(validBody(image)), signal: clientTimeout.signal }).then(
      () => "answered",
      (error: Error) => `failed: ${error.name}`,
    );
    void outcome.finally(() => (settled = true));
    await expect.poll(async () => (await adminApi(sim).stats()).body.connection_faults).toBe(1);
    // Held, not answered or reset: the call ends by the client's timeout, with its reason.
    expect(settled).toBe(false);
    clientTimeout.abort(new DOMException("the client's timeout", "TimeoutError"));
    expect(await outcome).toBe("failed: TimeoutError");
    expect((await adminApi(sim).tasks()).body).toEqual([]);
    expect((await adminApi(sim).stats()).body.connection_faults).toBe(1);
  });
});

describe("hanging calls under the test's control", () => {
  it("when a create hangs on a timeout fault, then dropping the hanging calls resets its connection at once, long before hang_ms, and no task exists", async () => {
    const { sim } = await setup({ SIM_TIMEOUT_RATE: "1", SIM_CONNECTION_FAULT_POINT: "before_create", SIM_HANG_MS: "120000" });
    // No client timeout: only the drop can end this call.
    const create = fetch(`${sim.url}/v1/images/editing/expand`, {
      method: "POST",
      headers: { authorization: `Bearer ${randomToken()}`, "content-type": "application/json" },
      body: JSON.stringify(validBody(image)),
    });
    const outcome = create.then(
      () => "answered",
      (error: Error) => `failed: ${(error.cause as { code?: string } | undefined)?.code ?? error.message}`,
    );
    await expect.poll(async () => (await adminApi(sim).stats()).body.connection_faults).toBe(1);
    expect(await adminApi(sim).dropHanging()).toEqual({ status: 200, body: { dropped: 1 } });
    expect(await outcome).toMatch(/^failed: (UND_ERR_SOCKET|ECONNRESET)/);
    expect((await adminApi(sim).tasks()).body).toEqual([]);
    // Nothing is left hanging to drop.
    expect((await adminApi(sim).dropHanging()).body).toEqual({ dropped: 0 });
  });
});

describe("callback faults", () => {
  it("when callback_loss is 1, then no callback arrives and each is counted as lost", async () => {
    // No callback will come, so there is no event to wait on: the test ends the task itself (manual
    // clock), and the finish answers once the task's callbacks were handled (here: dropped). Polling
    // for `succeed` on the run-time clock missed vitest's 1 s poll bound on a loaded machine.
    const { sim, api, receiver } = await setup({ SIM_CALLBACK_LOSS: "1", SIM_CLOCK: "manual" });
    const created = await api.create(validBody(image, { callback_url: receiver.url }));
    expect((await adminApi(sim).finish(created.body.data.task_id)).status).toBe(200);
    expect((await api.get(created.body.data.task_id)).body.data.task_status).toBe("succeed");
    expect((await adminApi(sim).stats()).body.callbacks_lost).toBe(3);
    expect(receiver.received).toHaveLength(0);
  });

  it("when callback_duplicate is 1, then every callback arrives twice with the same webhook-id", async () => {
    const { api, receiver } = await setup({ SIM_CALLBACK_DUPLICATE: "1", SIM_WEBHOOK_SECRET: "whsec_c2VjcmV0" });
    const taskId = (await api.create(validBody(image, { callback_url: receiver.url }))).body.data.task_id as string;
    await receiver.waitFor((items) => statusesOf(items, taskId).filter((s) => s === "succeed").length === 2);
    expect(statusesOf(receiver.received, taskId)).toEqual(["submitted", "submitted", "processing", "processing", "succeed", "succeed"]);
    const ids = receiver.forTask(taskId).map((r) => r.headers["webhook-id"]);
    expect(ids[0]).toBe(ids[1]);
    expect(ids[2]).toBe(ids[3]);
    expect(ids[0]).not.toBe(ids[2]);
  });

  it("when callback_reorder is 1, then the processing callback arrives after the terminal one", async () => {
    const { api, receiver } = await setup({ SIM_CALLBACK_REORDER: "1" });
    const taskId = (await api.create(validBody(image, { callback_url: receiver.url }))).body.data.task_id as string;
    await receiver.waitFor((items) => statusesOf(items, taskId).length === 3);
    expect(statusesOf(receiver.received, taskId)).toEqual(["submitted", "succeed", "processing"]);
  });

  it("when callbacks are delayed, then each arrives no sooner than the delay after its change", async () => {
    const { api, receiver } = await setup({ SIM_CALLBACK_DELAY_MS: "150", SIM_RUN_MS: "30" });
    const taskId = (await api.create(validBody(image, { callback_url: receiver.url }))).body.data.task_id as string;
    await receiver.waitFor((items) => isTerminalIn(items, taskId));
    for (const cb of receiver.forTask(taskId)) expect(cb.at - cb.body.updated_at).toBeGreaterThanOrEqual(140);
  });

  it("when callback_mode is before_create_response, then the submitted callback arrives before the create answers", async () => {
    const { api, receiver } = await setup({ SIM_CALLBACK_MODE: "before_create_response" });
    const created = await api.create(validBody(image, { callback_url: receiver.url }));
    const answeredAt = Date.now();
    expect(created.status).toBe(200);
    const first = receiver.forTask(created.body.data.task_id)[0];
    expect(first?.body.task_status).toBe("submitted");
    expect(first?.at).toBeLessThanOrEqual(answeredAt);
  });

  it("when the callback receiver fails, then the task still ends and the failure is counted, not retried", async () => {
    const { sim, api } = await setup({});
    const failing = await startCallbackReceiver(500);
    cleanups.push(() => failing.stop());
    const taskId = (await api.create(validBody(image, { callback_url: failing.url }))).body.data.task_id as string;
    await failing.waitFor((items) => isTerminalIn(items, taskId));
    expect(statusesOf(failing.received, taskId)).toEqual(["submitted", "processing", "succeed"]);
    await expect.poll(async () => (await adminApi(sim).stats()).body.callbacks_failed, { interval: 20 }).toBe(3);
  });
});
