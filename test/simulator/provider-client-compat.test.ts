import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ProviderConfig, ProviderCreateInput } from "../../apps/domain/provider/provider-adapter.ts";
import { ProviderError } from "../../apps/domain/provider/provider-error.ts";
import { createProviderAdapter } from "../../apps/domain/provider/provider-families.ts";
import type { RunningSimulator } from "../../apps/simulator/simulator.server.ts";
import { adminApi, makeTestImage, randomToken, startCallbackReceiver, startTestSimulator } from "./sim-test-kit.ts";

// The orchestrator's own provider adapters against the simulator: the contract both sides must keep.
let sim: RunningSimulator;
let receiver: Awaited<ReturnType<typeof startCallbackReceiver>>;
let image: string;

beforeAll(async () => {
  sim = await startTestSimulator({ SIM_CAPACITY: "2", SIM_RUN_MS: "100" });
  receiver = await startCallbackReceiver();
  image = (await makeTestImage()).toString("base64");
});
afterAll(async () => {
  await sim.stop();
  await receiver.stop();
});

const clientFor = (overrides: Partial<ProviderConfig> = {}) =>
  createProviderAdapter({
    kind: "simulator",
    baseUrl: sim.url,
    pathPrefix: "",
    auth: { type: "bearer", token: randomToken() },
    downField: "down",
    timeoutMs: 2000,
    externalIdLookup: "path",
    ...overrides,
  });

const input = (extra: Partial<ProviderCreateInput> = {}): ProviderCreateInput => ({
  image,
  ratios: { up: 0.2, down: 0.2, left: 0.2, right: 0.2 },
  n: 1,
  externalTaskId: `ext-${randomToken()}`,
  callbackUrl: receiver.url,
  ...extra,
});

const refusal = async (promise: Promise<unknown>) => {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(ProviderError);
  return (error as ProviderError).details;
};

describe("the orchestrator's provider client against the simulator", () => {
  it("when the client creates, gets and finds by external id, then every answer parses", async () => {
    const client = clientFor();
    const request = input({ prompt: "a wider beach", watermark: false });
    const created = await client.create(request);
    expect(created).toMatchObject({ status: "submitted", providerStatus: "submitted", externalTaskId: request.externalTaskId });
    expect((await client.get(created.providerTaskId)).providerTaskId).toBe(created.providerTaskId);
    expect((await client.findByExternalId(request.externalTaskId))?.providerTaskId).toBe(created.providerTaskId);
    expect(await client.findByExternalId("never-submitted")).toBeUndefined();
  });

  it("when configured like CometAPI (/kling, bottom_expansion_ratio) or with a Kling JWT, then creates succeed", async () => {
    const comet = clientFor({ kind: "cometapi", pathPrefix: "/kling", downField: "bottom" });
    expect((await comet.create(input())).status).toBe("submitted");
    const jwt = clientFor({ kind: "kling", auth: { type: "jwt", accessKey: `ak-${randomToken()}`, secretKey: "sk" } });
    expect((await jwt.create(input())).status).toBe("submitted");
  });

  it("when the simulator refuses, then the client classifies each refusal as KLING.md says", async () => {
    const client = clientFor();
    await client.create(input({ n: 2 }));
    expect(await refusal(client.create(input()))).toMatchObject({ action: "retry", reason: "parallel_limit", code: 1303, httpStatus: 429 });
    expect(await refusal(client.create(input({ n: 12 })))).toMatchObject({ action: "fail_task", code: 1201, httpStatus: 400 });
    expect(await refusal(clientFor({ auth: { type: "bearer", token: "" } }).get("1"))).toMatchObject({ action: "pause_account", code: 1001 });
    expect(await refusal(client.get("no-such-task"))).toMatchObject({ action: "fail_task", reason: "task_unknown", code: 1203 });
  });

  it("when the route is unavailable, then the client sees a retryable 404 without a code", async () => {
    const down = await startTestSimulator({ SIM_ROUTE_UNAVAILABLE: "true" });
    try {
      const client = createProviderAdapter({
        kind: "cometapi",
        baseUrl: down.url,
        pathPrefix: "/kling",
        auth: { type: "bearer", token: randomToken() },
        downField: "bottom",
        timeoutMs: 2000,
        externalIdLookup: "path",
      });
      expect(await refusal(client.create(input()))).toMatchObject({ action: "retry", reason: "route_missing", code: null, httpStatus: 404 });
      expect(await refusal(client.findByExternalId("x"))).toMatchObject({ action: "retry", httpStatus: 404 });
    } finally {
      await down.stop();
    }
  });

  it("when a created task's answer is lost, then the client reports an unknown outcome and the task can be found", async () => {
    const token = randomToken();
    // The answer is lost once the simulator has made the task and holds the call (counted), not on a
    // 300 ms client timeout that a loaded machine ran before the simulator had read the request
    // (then no task existed). Dropping the held call loses the answer as a cut connection does.
    const client = clientFor({ auth: { type: "bearer", token }, timeoutMs: 60_000 });
    const faultsBefore = (await adminApi(sim).stats()).body.connection_faults as number;
    await adminApi(sim).patch({ timeout_rate: 1 });
    const request = input();
    try {
      const outcome = refusal(client.create(request));
      await expect.poll(async () => (await adminApi(sim).stats()).body.connection_faults).toBe(faultsBefore + 1);
      expect((await adminApi(sim).dropHanging()).body).toEqual({ dropped: 1 });
      expect(await outcome).toMatchObject({ action: "retry", outcomeUnknown: true });
    } finally {
      await adminApi(sim).patch({ timeout_rate: 0 });
    }
    expect((await client.findByExternalId(request.externalTaskId))?.externalTaskId).toBe(request.externalTaskId);
    expect((await adminApi(sim).tasks(token)).body).toHaveLength(1);
  });
});
