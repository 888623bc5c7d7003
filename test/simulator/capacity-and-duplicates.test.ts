import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningSimulator } from "../../apps/simulator/simulator.server.ts";
import {
  adminApi,
  isTerminalIn,
  makeTestImage,
  providerApi,
  randomToken,
  startCallbackReceiver,
  startTestSimulator,
  validBody,
} from "./sim-test-kit.ts";

let sim: RunningSimulator;
let receiver: Awaited<ReturnType<typeof startCallbackReceiver>>;
let image: string;

beforeAll(async () => {
  sim = await startTestSimulator({ SIM_CAPACITY: "3", SIM_RUN_MS: "150" });
  receiver = await startCallbackReceiver();
  image = (await makeTestImage()).toString("base64");
});
afterAll(async () => {
  await sim.stop();
  await receiver.stop();
});

describe("duplicate external_task_id", () => {
  it("when an external_task_id is reused in one account, then the create is refused 400/1201 and counted", async () => {
    const token = randomToken();
    const api = providerApi(sim, token);
    const before = (await adminApi(sim).stats()).body.duplicate_external_task_ids as number;
    const body = validBody(image);
    expect((await api.create(body)).status).toBe(200);
    const again = await api.create(body);
    expect(again.status).toBe(400);
    expect(again.body.code).toBe(1201);
    expect(again.body.message).toMatch(/external_task_id.*duplicate/);

    const stats = (await adminApi(sim).stats()).body;
    expect(stats.duplicate_external_task_ids).toBe(before + 1);
    const tasks = (await adminApi(sim).tasks(token)).body;
    expect(tasks).toHaveLength(1);
    expect(tasks[0]).toMatchObject({ external_task_id: body.external_task_id, create_count: 2, n: 1, account: token });
  });

  it("when two accounts use the same external_task_id, then both are accepted", async () => {
    const body = validBody(image);
    expect((await providerApi(sim, randomToken()).create(body)).status).toBe(200);
    expect((await providerApi(sim, randomToken()).create(body)).status).toBe(200);
  });

  it("when many creates with one external_task_id race, then exactly one task is created", async () => {
    const token = randomToken();
    const body = validBody(image);
    const answers = await Promise.all(Array.from({ length: 6 }, () => providerApi(sim, token).create(body)));
    expect(answers.filter((a) => a.status === 200)).toHaveLength(1);
    const tasks = (await adminApi(sim).tasks(token)).body;
    expect(tasks).toHaveLength(1);
    expect(tasks[0].create_count).toBe(6);
  });
});

describe("per-account capacity", () => {
  it("when an account's tasks would hold more than capacity slots, then the create answers 429/1303 and the peak never exceeds capacity", async () => {
    const token = randomToken();
    const api = providerApi(sim, token);
    const answers = await Promise.all(
      [1, 2, 1, 1, 2].map((n) => api.create(validBody(image, { n, callback_url: receiver.url }))),
    );
    const accepted = answers.filter((a) => a.status === 200);
    const refused = answers.filter((a) => a.status === 429);
    expect(accepted.length + refused.length).toBe(5);
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) expect(r.body).toMatchObject({ code: 1303, request_id: expect.any(String) });

    const stats = (await adminApi(sim).stats(token)).body;
    expect(stats.capacity).toBe(3);
    expect(stats.peak_slots_in_use).toBeLessThanOrEqual(3);
    expect(stats.slots_in_use).toBeLessThanOrEqual(3);

    // Slots come back when tasks end, so the account can submit again.
    const ids = accepted.map((a) => a.body.data.task_id as string);
    await receiver.waitFor((items) => ids.every((id) => isTerminalIn(items, id)));
    expect((await adminApi(sim).stats(token)).body.slots_in_use).toBe(0);
    expect((await api.create(validBody(image, { n: 3 }))).status).toBe(200);
    expect((await adminApi(sim).stats(token)).body.peak_slots_in_use).toBe(3);
  });

  it("when one account is full, then another account can still create", async () => {
    const full = providerApi(sim, randomToken());
    expect((await full.create(validBody(image, { n: 3 }))).status).toBe(200);
    expect((await full.create(validBody(image))).status).toBe(429);
    expect((await providerApi(sim, randomToken()).create(validBody(image, { n: 3 }))).status).toBe(200);
  });

  it("when n is larger than the capacity, then the create is always refused with 1303", async () => {
    const answer = await providerApi(sim, randomToken()).create(validBody(image, { n: 4 }));
    expect([answer.status, answer.body.code]).toEqual([429, 1303]);
  });
});
