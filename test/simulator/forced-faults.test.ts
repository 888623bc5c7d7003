import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseSimulatorConfig } from "../../apps/simulator/simulator.config.ts";
import type { RunningSimulator } from "../../apps/simulator/simulator.server.ts";
import { adminApi, makeTestImage, providerApi, randomToken, startCallbackReceiver, startTestSimulator, validBody } from "./sim-test-kit.ts";

let image: string;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  image = (await makeTestImage()).toString("base64");
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

// The admin kit plus the routes added for fault tests.
const admin = (sim: RunningSimulator) => {
  const send = async (method: string, path: string) => {
    const response = await fetch(`${sim.url}/_sim${path}`, { method });
    return { status: response.status, body: (await response.json()) as any };
  };
  const account = (value?: string) => (value ? `?account=${encodeURIComponent(value)}` : "");
  return {
    ...adminApi(sim),
    forget: (id: string, owner?: string) => send("DELETE", `/tasks/${encodeURIComponent(id)}${account(owner)}`),
    createCalls: (owner?: string) => send("GET", `/create-calls${account(owner)}`),
  };
};

const setup = async (env: Record<string, string> = {}) => {
  const sim = await startTestSimulator(env);
  cleanups.push(() => sim.stop());
  return { sim, admin: admin(sim) };
};

describe("create_error_code", () => {
  it("when a create error code is set, then every create answers it with its documented status, counts the call, and makes no task", async () => {
    const { sim, admin } = await setup({ SIM_CREATE_ERROR_CODE: "1101" });
    const api = providerApi(sim, randomToken());
    const body = validBody(image);
    const refused = await api.create(body);
    expect(refused.status).toBe(429);
    expect(refused.body).toMatchObject({ code: 1101, message: expect.stringMatching(/arrears/), request_id: expect.any(String) });

    for (const [code, status] of [[1002, 401], [1201, 400], [1301, 400], [1304, 429], [5001, 503]] as const) {
      expect((await admin.patch({ create_error_code: code })).body.create_error_code).toBe(code);
      const answer = await api.create(validBody(image));
      expect(answer.status).toBe(status);
      expect(answer.body.code).toBe(code);
    }
    expect((await admin.stats()).body).toMatchObject({ tasks_created: 0, create_errors_forced: 6 });
    expect((await admin.tasks()).body).toEqual([]);
    const calls = (await admin.createCalls()).body as { external_task_id: string; count: number }[];
    expect(calls.find((c) => c.external_task_id === body.external_task_id)?.count).toBe(1);

    expect((await admin.patch({ create_error_code: null })).body.create_error_code).toBeNull();
    const accepted = await api.create(body);
    expect(accepted.status).toBe(200);
    const [task] = (await admin.tasks()).body;
    expect(task).toMatchObject({ external_task_id: body.external_task_id, create_count: 2 });
  });

  it("when a create error code is not a provider code, then the config refuses it, by env and by PATCH", async () => {
    const { admin } = await setup();
    const answer = await admin.patch({ create_error_code: 1234 });
    expect(answer.status).toBe(400);
    expect(answer.body.message).toMatch(/create_error_code: must be one of/);
    expect(() => parseSimulatorConfig({ SIM_CREATE_ERROR_CODE: "42" })).toThrow(/SIM_CREATE_ERROR_CODE/);
    expect(parseSimulatorConfig({ SIM_CREATE_ERROR_CODE: "1303", SIM_FOREIGN_SLOTS_IN_USE: "2" })).toMatchObject({
      SIM_CREATE_ERROR_CODE: 1303,
      SIM_FOREIGN_SLOTS_IN_USE: 2,
    });
  });
});

describe("foreign_slots_in_use", () => {
  it("when another client holds slots of the account, then creates see 1303 once own plus foreign slots reach capacity, and the own numbers leave them out", async () => {
    const { sim, admin } = await setup({ SIM_CAPACITY: "4", SIM_FOREIGN_SLOTS_IN_USE: "3", SIM_RUN_MS: "60000" });
    const token = randomToken();
    const api = providerApi(sim, token);
    expect((await api.create(validBody(image, { n: 1 }))).status).toBe(200);
    const refused = await api.create(validBody(image, { n: 1 }));
    expect(refused.status).toBe(429);
    expect(refused.body).toMatchObject({ code: 1303, message: expect.stringMatching(/4 of 4 slots in use \(3 of them by another client\)/) });
    expect((await admin.stats(token)).body).toMatchObject({ slots_in_use: 1, peak_slots_in_use: 1, capacity: 4, foreign_slots_in_use: 3, rejected_over_capacity: 1 });

    await admin.patch({ foreign_slots_in_use: 0 });
    expect((await api.create(validBody(image, { n: 3 }))).status).toBe(200);
    expect((await admin.stats(token)).body).toMatchObject({ slots_in_use: 4, peak_slots_in_use: 4, foreign_slots_in_use: 0 });
  });
});

describe("DELETE /_sim/tasks/{id}", () => {
  it("when the provider forgets a task, then gets answer 1203, its slots are free, no further callback comes, and its external_task_id may be created again", async () => {
    // The manual clock keeps the task `submitted` until the test ends it: with a run time it could
    // move on before the forget on a loaded machine (a hog run saw "processing").
    const { sim, admin } = await setup({ SIM_CAPACITY: "1", SIM_CLOCK: "manual" });
    const receiver = await startCallbackReceiver();
    cleanups.push(() => receiver.stop());
    const token = randomToken();
    const api = providerApi(sim, token);
    const body = validBody(image, { callback_url: receiver.url });
    const created = await api.create(body);
    expect(created.status).toBe(200);
    const taskId = created.body.data.task_id as string;
    await receiver.waitFor((items) => items.some((r) => r.body.task_id === taskId && r.body.task_status === "submitted"));

    const forgotten = await admin.forget(body.external_task_id, token);
    expect(forgotten.status).toBe(200);
    expect(forgotten.body).toMatchObject({ forgotten: true, task_id: taskId, external_task_id: body.external_task_id, status: "submitted" });
    expect((await admin.forget(taskId)).status).toBe(404);
    expect((await api.get(taskId)).body.code).toBe(1203);
    expect((await api.get(body.external_task_id)).body.code).toBe(1203);
    expect((await admin.stats(token)).body).toMatchObject({ slots_in_use: 0, tasks_forgotten: 1 });

    // Created again under the same external_task_id: a new task, the second create call counted.
    const again = await api.create(body);
    expect(again.status).toBe(200);
    expect(again.body.data.task_id).not.toBe(taskId);
    expect((await admin.finish(again.body.data.task_id)).status).toBe(200);
    await receiver.waitFor((items) => items.some((r) => r.body.task_id === again.body.data.task_id && r.body.task_status === "succeed"));
    expect(receiver.forTask(taskId).map((r) => r.body.task_status)).toEqual(["submitted"]);
    const tasks = (await admin.tasks(token)).body;
    expect(tasks).toHaveLength(1);
    expect(tasks[0]).toMatchObject({ task_id: again.body.data.task_id, external_task_id: body.external_task_id, create_count: 2, status: "succeed" });
    expect((await admin.stats(token)).body).toMatchObject({ duplicate_external_task_ids: 0, tasks_created: 2, tasks_succeeded: 1 });
  });
});
