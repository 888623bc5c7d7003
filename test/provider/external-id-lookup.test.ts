import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ProviderConfig } from "../../apps/domain/provider/provider-adapter.ts";
import { createProviderAdapter } from "../../apps/domain/provider/provider-families.ts";
import { parseSimulatorConfig } from "../../apps/simulator/simulator.config.ts";
import { startSimulator, type RunningSimulator } from "../../apps/simulator/simulator.server.ts";
import { makeImage } from "../support/images.ts";

let sim: RunningSimulator;
beforeAll(async () => {
  sim = await startSimulator(parseSimulatorConfig({ SIMULATOR_PORT: "0", SIM_RUN_MS: "60000", LOG_LEVEL: "silent" }));
});
afterAll(() => sim?.stop());

const client = (token: string, externalIdLookup: ProviderConfig["externalIdLookup"]) =>
  createProviderAdapter({
    kind: "simulator",
    baseUrl: sim.url,
    pathPrefix: "",
    auth: { type: "bearer", token },
    downField: "down",
    timeoutMs: 5_000,
    externalIdLookup,
  });

describe("finding a provider task by our external_task_id", () => {
  it.each(["path", "query", "list"] as const)("when the lookup is `%s`, then an existing task is found and an unknown id is not", async (mode) => {
    const token = `acct-${randomUUID()}`;
    const externalTaskId = randomUUID();
    const created = await client(token, "path").create({
      image: (await makeImage(320, 320)).toString("base64"),
      ratios: { up: 0.1, down: 0.1, left: 0.1, right: 0.1 },
      n: 1,
      externalTaskId,
      callbackUrl: "http://127.0.0.1:9/unused",
    });
    const lookup = client(token, mode);
    expect((await lookup.findByExternalId(externalTaskId))?.providerTaskId).toBe(created.providerTaskId);
    expect(await lookup.findByExternalId(randomUUID())).toBeUndefined();
  });

  it("when lookups are off, then nothing is ever found (the provider offers no way to ask)", async () => {
    expect(await client(`acct-${randomUUID()}`, "none").findByExternalId(randomUUID())).toBeUndefined();
  });
});
