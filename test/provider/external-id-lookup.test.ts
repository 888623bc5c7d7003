import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProviderError } from "../../apps/domain/provider/provider-error.ts";
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

describe("a lookup answered by something other than the provider", () => {
  it.each([
    ["an HTML 404 page (a proxy in front of the provider)", "text/html", "<html><body>404 Not Found</body></html>"],
    ["the route's own 404 ({\"code\": null})", "application/json", JSON.stringify({ code: null, message: "404" })],
    ["an empty 404", "text/plain", ""],
  ])("when the lookup gets %s, then it fails to be retried instead of saying the task does not exist", async (_what, contentType, body) => {
    const server = createServer((_req, res) => res.writeHead(404, { "content-type": contentType }).end(body));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const lookup = createProviderAdapter({
        kind: "simulator",
        baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        pathPrefix: "",
        auth: { type: "bearer", token: "t" },
        downField: "down",
        timeoutMs: 5_000,
        externalIdLookup: "path",
      });
      const error = await lookup.findByExternalId(randomUUID()).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ProviderError);
      expect((error as ProviderError).details.action).toBe("retry");
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
