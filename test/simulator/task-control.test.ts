import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../apps/domain/config/parse-env.ts";
import { parseSimulatorConfig } from "../../apps/simulator/simulator.config.ts";
import type { RunningSimulator } from "../../apps/simulator/simulator.server.ts";
import { adminApi, makeTestImage, providerApi, randomToken, startCallbackReceiver, startTestSimulator, statusesOf, validBody } from "./sim-test-kit.ts";

// Time under the test's control (SIM_TASK_CONTROL): a task ends, fails or calls back when the test
// says so, and under the manual clock it stays running until then.

let image: string;
let receiver: Awaited<ReturnType<typeof startCallbackReceiver>>;

beforeAll(async () => {
  image = (await makeTestImage()).toString("base64");
  receiver = await startCallbackReceiver();
});
afterAll(() => receiver.stop());

describe("the manual clock", () => {
  let sim: RunningSimulator;
  beforeAll(async () => {
    // run_ms 0 and every task failing (no render to wait for): under the auto clock a task has
    // ended before the create's answer is read, so one still running shows the clock is stopped.
    sim = await startTestSimulator({ SIM_CLOCK: "manual", SIM_RUN_MS: "0", SIM_FAIL_RATE: "1" });
  });
  afterAll(() => sim.stop());

  it("when a task is created under the manual clock, then it stays submitted; under the auto clock the same task has already failed", async () => {
    const api = providerApi(sim, randomToken());
    const held = (await api.create(validBody(image))).body.data.task_id as string;
    expect((await api.get(held)).body.data.task_status).toBe("submitted");
    expect((await api.get(held)).body.data.task_status).toBe("submitted");

    expect((await adminApi(sim).patch({ clock: "auto" })).body.clock).toBe("auto");
    const timed = (await api.create(validBody(image))).body.data.task_id as string;
    await expect.poll(async () => (await api.get(timed)).body.data.task_status).toBe("failed");
    // The held task got timers for what was left of its run time (nothing): it ended too.
    await expect.poll(async () => (await api.get(held)).body.data.task_status).toBe("failed");
    await adminApi(sim).patch({ clock: "manual" });
  });
});

describe("ending tasks on demand", () => {
  let sim: RunningSimulator;
  beforeAll(async () => {
    sim = await startTestSimulator({ SIM_CLOCK: "manual", SIM_CAPACITY: "2" });
  });
  afterAll(() => sim.stop());

  it("when a running task is finished, then it succeeds with its images through processing, its slots are free, and the callbacks came in order before the answer", async () => {
    const token = randomToken();
    const api = providerApi(sim, token);
    const id = (await api.create(validBody(image, { n: 2, callback_url: receiver.url, external_task_id: `ext-${token}` }))).body.data.task_id as string;
    expect((await adminApi(sim).stats(token)).body.slots_in_use).toBe(2);
    expect((await api.create(validBody(image))).body.code).toBe(1303);

    // By external_task_id, as a test knows the orchestrator's tasks.
    const answer = await adminApi(sim).finish(`ext-${token}`);
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ task_id: id, status: "succeed" });
    expect(statusesOf(receiver.received, id)).toEqual(["submitted", "processing", "succeed"]);
    const got = (await api.get(id)).body.data;
    expect(got).toMatchObject({ task_status: "succeed", final_unit_deduction: "2" });
    expect(got.task_result.images).toHaveLength(2);
    expect((await fetch(got.task_result.images[1].url)).status).toBe(200);
    expect((await adminApi(sim).stats(token)).body.slots_in_use).toBe(0);

    const again = await adminApi(sim).finish(id);
    expect(again.status).toBe(409);
    expect(again.body).toMatchObject({ error: "already_ended", task: { status: "succeed" } });
  });

  it("when a running task is failed with a message, then it fails with that message and deducts nothing", async () => {
    const api = providerApi(sim, randomToken());
    const id = (await api.create(validBody(image, { callback_url: receiver.url }))).body.data.task_id as string;
    const answer = await adminApi(sim).fail(id, { message: "content policy: on demand" });
    expect(answer.body).toMatchObject({ status: "failed", status_msg: "content policy: on demand" });
    expect((await api.get(id)).body.data).toMatchObject({ task_status: "failed", task_status_msg: "content policy: on demand", final_unit_deduction: "0" });
    expect(statusesOf(receiver.received, id)).toEqual(["submitted", "processing", "failed"]);
    expect((await adminApi(sim).fail(id, { message: 7 })).status).toBe(400);
  });

  it("when a task's callback is asked for, then its current state is posted again", async () => {
    const api = providerApi(sim, randomToken());
    const id = (await api.create(validBody(image, { callback_url: receiver.url }))).body.data.task_id as string;
    expect((await adminApi(sim).callback(id)).status).toBe(200);
    expect(statusesOf(receiver.received, id)).toEqual(["submitted", "submitted"]);
    const noHook = (await api.create(validBody(image))).body.data.task_id as string;
    expect((await adminApi(sim).callback(noHook)).status).toBe(409);
    expect((await adminApi(sim).finish("no-such-task")).status).toBe(404);
  });
});

describe("task control is off unless asked for", () => {
  let sim: RunningSimulator;
  beforeAll(async () => {
    sim = await startTestSimulator({ SIM_TASK_CONTROL: "false", SIM_RUN_MS: "100000" });
  });
  afterAll(() => sim.stop());

  it("when the control routes or the manual clock are asked for without SIM_TASK_CONTROL, then they are refused with a message naming it", async () => {
    const api = providerApi(sim, randomToken());
    const id = (await api.create(validBody(image))).body.data.task_id as string;
    const refused = await adminApi(sim).finish(id);
    expect(refused.status).toBe(404);
    expect(refused.body.message).toMatch(/SIM_TASK_CONTROL=true/);
    expect((await api.get(id)).body.data.task_status).toBe("submitted");
    const drop = await adminApi(sim).dropHanging();
    expect(drop.status).toBe(404);
    expect(drop.body.message).toMatch(/SIM_TASK_CONTROL=true/);
    const patch = await adminApi(sim).patch({ clock: "manual" });
    expect(patch.status).toBe(400);
    expect(patch.body.message).toMatch(/SIM_TASK_CONTROL/);
    expect((await adminApi(sim).config()).body.clock).toBe("auto");
    expect(() => parseSimulatorConfig({ SIM_CLOCK: "manual" })).toThrow(ConfigError);
    expect(() => parseSimulatorConfig({ SIM_CLOCK: "later", SIM_TASK_CONTROL: "true" })).toThrow(ConfigError);
  });
});
