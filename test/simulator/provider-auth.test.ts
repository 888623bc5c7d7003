import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signKlingJwt } from "../../apps/domain/provider/kling-protocol/kling-jwt.ts";
import type { RunningSimulator } from "../../apps/simulator/simulator.server.ts";
import { adminApi, makeTestImage, providerApi, randomToken, startTestSimulator, validBody } from "./sim-test-kit.ts";

let sim: RunningSimulator;
let image: string;

beforeAll(async () => {
  sim = await startTestSimulator({ SIM_RUN_MS: "5000" });
  image = (await makeTestImage()).toString("base64");
});
afterAll(() => sim.stop());

const createWithHeader = async (authorization: string | undefined) => {
  const response = await fetch(`${sim.url}/v1/images/editing/expand`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(authorization === undefined ? {} : { authorization }) },
    body: JSON.stringify(validBody(image)),
  });
  return { status: response.status, body: (await response.json()) as { code: number; message: string; request_id: string } };
};

describe("provider authentication", () => {
  it("when the Authorization header is missing, then it answers 401 with code 1001", async () => {
    const answer = await createWithHeader(undefined);
    expect(answer.status).toBe(401);
    expect(answer.body).toMatchObject({ code: 1001, request_id: expect.any(String) });
  });

  it("when the Authorization header is malformed, then it answers 401 with code 1002", async () => {
    for (const header of ["Basic abc", "Bearer two words", "token-without-scheme"]) {
      const answer = await createWithHeader(header);
      expect(answer.status, header).toBe(401);
      expect(answer.body.code, header).toBe(1002);
    }
  });

  it("when a JWT has expired or is not yet valid, then it answers 401 with 1004 or 1003", async () => {
    const now = Math.floor(Date.now() / 1000);
    const expired = await createWithHeader(`Bearer ${signKlingJwt("ak-test", "sk", now - 3600)}`);
    expect([expired.status, expired.body.code]).toEqual([401, 1004]);
    const early = await createWithHeader(`Bearer ${signKlingJwt("ak-test", "sk", now + 3600)}`);
    expect([early.status, early.body.code]).toEqual([401, 1003]);
  });

  it("when a valid JWT is used, then its iss is the account, whatever the signature", async () => {
    const accessKey = `ak-${randomToken()}`;
    const first = await providerApi(sim, signKlingJwt(accessKey, "secret-one")).create(validBody(image));
    expect(first.status).toBe(200);
    const again = await providerApi(sim, signKlingJwt(accessKey, "secret-two")).get(first.body.data.task_id);
    expect(again.status).toBe(200);
    const tasks = (await adminApi(sim).tasks(accessKey)).body;
    expect(tasks).toHaveLength(1);
    expect(tasks[0].account).toBe(accessKey);
  });

  it("when SIM_API_KEYS is set, then only listed tokens are accepted (1002 otherwise)", async () => {
    const locked = await startTestSimulator({ SIM_API_KEYS: "Key-One, key-two" });
    try {
      expect((await providerApi(locked, "Key-One").create(validBody(image))).status).toBe(200);
      const refused = await providerApi(locked, "key-one").create(validBody(image));
      expect([refused.status, refused.body.code]).toEqual([401, 1002]);
    } finally {
      await locked.stop();
    }
  });
});
