import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../apps/domain/config/parse-env.ts";
import { parseSimulatorConfig } from "../../apps/simulator/simulator.config.ts";
import type { RunningSimulator } from "../../apps/simulator/simulator.server.ts";
import { adminApi, makeTestImage, providerApi, randomToken, startTestSimulator, validBody } from "./sim-test-kit.ts";

let sim: RunningSimulator;

beforeAll(async () => {
  sim = await startTestSimulator({ SIM_CAPACITY: "7", SIM_RUN_MS: "100-200", SIM_CALLBACK_LOSS: "0.25" });
});
afterAll(() => sim.stop());

describe("admin config", () => {
  it("when the config is read, then it shows the env values under lower-case keys", async () => {
    const config = (await adminApi(sim).config()).body;
    expect(config).toMatchObject({
      capacity: 7,
      run_ms: "100-200",
      fail_rate: 0,
      error_rate: 0,
      callback_loss: 0.25,
      callback_duplicate: 0,
      callback_reorder: 0,
      route_unavailable: false,
      down_field: "both",
      webhook_secret: null,
    });
  });

  it("when valid settings are patched, then the full new config is answered and kept", async () => {
    const answer = await adminApi(sim).patch({ run_ms: 50, fail_rate: 0.5, webhook_secret: "whsec_c2VjcmV0", callback_mode: "before_create_response" });
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ capacity: 7, run_ms: 50, fail_rate: 0.5, webhook_secret: "whsec_c2VjcmV0", callback_mode: "before_create_response" });
    expect((await adminApi(sim).config()).body).toEqual(answer.body);
    expect((await adminApi(sim).patch({ run_ms: "10-20", webhook_secret: null })).body).toMatchObject({ run_ms: "10-20", webhook_secret: null });
  });

  it("when invalid settings are patched, then it answers 400 naming each bad key and changes nothing", async () => {
    const before = (await adminApi(sim).config()).body;
    const cases: [unknown, RegExp][] = [
      [{ fail_rate: 1.5 }, /fail_rate/],
      [{ capacity: -1 }, /capacity/],
      [{ run_ms: "20-10" }, /run_ms/],
      [{ run_ms: "fast" }, /run_ms/],
      [{ down_field: "sideways" }, /down_field/],
      [{ webhook_secret: "plain" }, /webhook_secret/],
      [{ webhook_secret: "whsec_abc" }, /webhook_secret/],
      [{ route_unavailable: "yes" }, /route_unavailable/],
      [{ no_such_key: 1 }, /no_such_key/],
    ];
    for (const [patch, pattern] of cases) {
      const answer = await adminApi(sim).patch(patch);
      expect(answer.status, JSON.stringify(patch)).toBe(400);
      expect(answer.body.message, JSON.stringify(patch)).toMatch(pattern);
    }
    expect((await adminApi(sim).config()).body).toEqual(before);
  });

  it("when the simulator is reset, then tasks and stats are cleared and the config is kept", async () => {
    const isolated = await startTestSimulator({ SIM_RUN_MS: "5000", SIM_CAPACITY: "2" });
    try {
      const api = providerApi(isolated, randomToken());
      expect((await api.create(validBody((await makeTestImage()).toString("base64"), { n: 2 }))).status).toBe(200);
      expect((await adminApi(isolated).stats()).body).toMatchObject({ tasks_created: 1, create_calls: 1, slots_in_use: 2 });
      expect((await adminApi(isolated).reset()).status).toBe(200);
      expect((await adminApi(isolated).tasks()).body).toEqual([]);
      expect((await adminApi(isolated).stats()).body).toMatchObject({ tasks_created: 0, create_calls: 0, slots_in_use: 0, peak_slots_in_use: 0, capacity: 2 });
    } finally {
      await isolated.stop();
    }
  });
});

describe("env config", () => {
  it("when the env is empty, then the documented defaults apply", () => {
    expect(parseSimulatorConfig({})).toMatchObject({
      SIMULATOR_PORT: 3100,
      SIM_CAPACITY: 5,
      SIM_RUN_MS: { min: 3000, max: 3000 },
      SIM_DOWN_FIELD: "both",
      SIM_ROUTE_UNAVAILABLE: false,
    });
  });

  it("when a variable is malformed, then parsing fails naming it", () => {
    for (const [name, value] of [["SIM_FAIL_RATE", "2"], ["SIM_RUN_MS", "9-3"], ["SIM_DOWN_FIELD", "up"], ["SIM_WEBHOOK_SECRET", "nope"], ["SIMULATOR_PORT", "70000"]]) {
      const error = (() => {
        try {
          parseSimulatorConfig({ [name as string]: value });
        } catch (e) {
          return e;
        }
      })();
      expect(error, name).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).message, name).toContain(name);
    }
  });

  it("when SIM_RUN_MS is a range and SIM_API_KEYS a list, then both are parsed", () => {
    expect(parseSimulatorConfig({ SIM_RUN_MS: "50-200", SIM_API_KEYS: "a, B ,,c" })).toMatchObject({
      SIM_RUN_MS: { min: 50, max: 200 },
      SIM_API_KEYS: ["a", "B", "c"],
    });
  });
});
