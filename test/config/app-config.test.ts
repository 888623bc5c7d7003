import { describe, expect, it } from "vitest";
import { parseApiConfig } from "../../apps/api/api.config.ts";
import { ConfigError } from "../../apps/domain/config/parse-env.ts";
import { resolveProviderConfig } from "../../apps/domain/provider/provider-config.schema.ts";
import { parseWorkerConfig } from "../../apps/worker/worker.config.ts";

const problemsOf = (fn: () => unknown): string[] => {
  try {
    fn();
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error("expected a ConfigError");
};

describe("configuration", () => {
  it("when nothing is set, then the defaults serve a local run", () => {
    const api = parseApiConfig({});
    expect(api).toMatchObject({
      DATABASE_URL: "postgresql://postgres@127.0.0.1:5432/kling_orchestrator",
      REDIS_URL: "redis://127.0.0.1:6379",
      PORT: 3000,
    });
    const worker = parseWorkerConfig({});
    expect(resolveProviderConfig(worker)).toMatchObject({ kind: "simulator", baseUrl: "http://127.0.0.1:3100" });
  });

  it("when variables are malformed, then every one is named in the error", () => {
    const problems = problemsOf(() => parseApiConfig({ PORT: "eighty", DATABASE_URL: "mysql://x", REDIS_URL: "nope" }));
    expect(problems.map((p) => p.split(":")[0])).toEqual(expect.arrayContaining(["PORT", "DATABASE_URL", "REDIS_URL"]));
  });

  it("when live-progress settings are malformed, then each is named, and the defaults are what the README says", () => {
    expect(parseApiConfig({})).toMatchObject({ LIVE_HEARTBEAT_MS: 15_000, LIVE_RESYNC_MS: 5_000, LIVE_MAX_STREAMS_PER_ACCOUNT: 100, LIVE_MAX_WAIT_SECONDS: 60 });
    const problems = problemsOf(() =>
      parseApiConfig({ LIVE_HEARTBEAT_MS: "0", LIVE_RESYNC_MS: "soon", LIVE_MAX_STREAMS_PER_ACCOUNT: "0", LIVE_MAX_WAIT_SECONDS: "1.5" }),
    );
    expect(problems.map((p) => p.split(":")[0]).sort()).toEqual(["LIVE_HEARTBEAT_MS", "LIVE_MAX_STREAMS_PER_ACCOUNT", "LIVE_MAX_WAIT_SECONDS", "LIVE_RESYNC_MS"]);
  });

  it("when running in production without SERVER_KEY, then the API refuses to start", () => {
    expect(problemsOf(() => parseApiConfig({ NODE_ENV: "production" }))[0]).toMatch(/^SERVER_KEY: must be set in production/);
  });

  it("when SERVER_KEY is short or a published placeholder, then the API refuses to start, in any environment", () => {
    expect(problemsOf(() => parseApiConfig({ SERVER_KEY: "short" }))[0]).toMatch(/^SERVER_KEY: must be at least 32 characters/);
    expect(problemsOf(() => parseApiConfig({ SERVER_KEY: "dev-only-signing-secret-change-me" }))[0]).toMatch(/^SERVER_KEY: /);
  });

  it("when a provider key is configured, then that provider is chosen with its own paths and field names", () => {
    expect(resolveProviderConfig(parseWorkerConfig({ COMETAPI_API_KEY: "sk-x" }))).toMatchObject({
      kind: "cometapi",
      baseUrl: "https://api.cometapi.com",
      pathPrefix: "/kling",
      downField: "bottom",
    });
    expect(resolveProviderConfig(parseWorkerConfig({ KLING_ACCESS_KEY: "ak", KLING_SECRET_KEY: "sk" }))).toMatchObject({
      kind: "kling",
      auth: { type: "jwt", accessKey: "ak", secretKey: "sk" },
      downField: "down",
    });
    expect(() => resolveProviderConfig(parseWorkerConfig({ PROVIDER: "kling" }))).toThrow(/KLING_API_KEY/);
  });
});
