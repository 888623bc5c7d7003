import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../apps/domain/config/parse-env.ts";
import { signKlingJwt } from "../../apps/domain/provider/kling-protocol/kling-jwt.ts";
import { parseSimulatorConfig } from "../../apps/simulator/simulator.config.ts";
import type { RunningSimulator } from "../../apps/simulator/simulator.server.ts";
import { makeTestImage, startTestSimulator, validBody } from "./sim-test-kit.ts";

// SIM_ACCESS_KEY + SIM_SECRET_KEY: the simulator checks JWT signatures on Kling's path family as
// Kling does, so our signing is tested against a verifier.

const accessKey = "ak-sim-jwt";
const secretKey = "sk-sim-jwt-0123456789abcdef";

let sim: RunningSimulator;
let image: string;

beforeAll(async () => {
  sim = await startTestSimulator({ SIM_ACCESS_KEY: accessKey, SIM_SECRET_KEY: secretKey, SIM_RUN_MS: "5000" });
  image = (await makeTestImage()).toString("base64");
});
afterAll(() => sim.stop());

const create = async (path: string, token: string) => {
  const response = await fetch(`${sim.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify(validBody(image)),
  });
  return { status: response.status, body: (await response.json()) as { code: number; message: string } };
};

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

describe("JWT signatures on Kling's path family", () => {
  it("when the JWT is signed with the access key's secret, then the create is accepted", async () => {
    const answer = await create("/v1/images/editing/expand", signKlingJwt(accessKey, secretKey));
    expect(answer).toMatchObject({ status: 200, body: { code: 0 } });
  });

  it.each([
    ["signed with another secret", () => signKlingJwt(accessKey, "not-the-secret-0123456789")],
    ["naming another access key", () => signKlingJwt("ak-someone-else", secretKey)],
    ["with its signature cut off", () => signKlingJwt(accessKey, secretKey).replace(/\.[^.]+$/, ".")],
    ["with alg none", () => `${b64({ alg: "none", typ: "JWT" })}.${b64({ iss: accessKey, exp: Math.floor(Date.now() / 1000) + 600 })}.`],
    ["with its claims changed after signing", () => {
      const [header, , signature] = signKlingJwt(accessKey, secretKey).split(".");
      return `${header}.${b64({ iss: accessKey, exp: Math.floor(Date.now() / 1000) + 99_999 })}.${signature}`;
    }],
    ["a plain API key instead of a JWT", () => "sim-local-key"],
  ])("when the token is %s, then it is refused with 401/1002 as Kling would", async (_why, token) => {
    const answer = await create("/v1/images/editing/expand", token());
    expect(answer.status).toBe(401);
    expect(answer.body.code).toBe(1002);
  });

  it("when the JWT is well signed but expired, then it answers 1004 (re-sign), not 1002", async () => {
    const answer = await create("/v1/images/editing/expand", signKlingJwt(accessKey, secretKey, Math.floor(Date.now() / 1000) - 3_600));
    expect(answer).toMatchObject({ status: 401, body: { code: 1004 } });
  });

  it("when CometAPI's path family is used, then a bearer key still works (the pair is Kling's)", async () => {
    expect(await create("/kling/v1/images/editing/expand", "comet-key")).toMatchObject({ status: 200, body: { code: 0 } });
  });

  it("when only one of the pair is configured, then the simulator refuses to start", () => {
    expect(() => parseSimulatorConfig({ SIM_ACCESS_KEY: accessKey })).toThrow(ConfigError);
    expect(() => parseSimulatorConfig({ SIM_ACCESS_KEY: accessKey })).toThrow(/SIM_SECRET_KEY: SIM_ACCESS_KEY and SIM_SECRET_KEY go together/);
  });
});
