import { describe, expect, it } from "vitest";
import { parseApiConfig } from "../../apps/api/api.config.ts";
import { ConfigError } from "../../apps/domain/config/parse-env.ts";
import { resolveProviderRoutes } from "../../apps/domain/provider/provider-routes.schema.ts";
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

const routesOf = (env: Record<string, string>) => resolveProviderRoutes(parseWorkerConfig(env));
const withRoutes = (routes: unknown) => ({ PROVIDER_ROUTES: JSON.stringify(routes) });

const comet = { name: "comet", kind: "cometapi", baseUrl: "https://api.cometapi.com", apiKey: "sk-c", capacity: 5 };
const kling = { name: "kling", kind: "kling", baseUrl: "https://api-singapore.klingai.com", accessKey: "ak", secretKey: "sk", capacity: 3 };

describe("PROVIDER_ROUTES", () => {
  it("when it is not set, then today's single-provider variables mean one route named default, on the Redis keys it always had", () => {
    expect(routesOf({ COMETAPI_API_KEY: "sk-x", PROVIDER_CAPACITY: "7" })).toEqual([
      expect.objectContaining({ name: "default", kind: "cometapi", pathPrefix: "/kling", capacity: 7, legacyKeys: true, unitPrice: null }),
    ]);
    expect(routesOf({})).toEqual([expect.objectContaining({ name: "default", kind: "simulator", baseUrl: "http://127.0.0.1:3100" })]);
  });

  it("when routes are listed, then each keeps its credentials and capacity, ordered by priority and then by their place in the list", () => {
    const routes = routesOf(withRoutes([comet, { ...kling, priority: 1, unitPrice: 0.14 }, { ...comet, name: "comet-2", apiKey: "sk-d" }]));
    expect(routes.map((r) => r.name)).toEqual(["kling", "comet", "comet-2"]);
    expect(routes[0]).toMatchObject({ kind: "kling", pathPrefix: "", downField: "down", capacity: 3, unitPrice: 0.14, auth: { type: "jwt", accessKey: "ak", secretKey: "sk" } });
    expect(routes[1]).toMatchObject({ kind: "cometapi", pathPrefix: "/kling", downField: "bottom", capacity: 5, auth: { type: "bearer", token: "sk-c" }, legacyKeys: false });
  });

  it.each([
    ["not JSON", "[{name:", /^PROVIDER_ROUTES: must be a JSON list of routes/],
    ["an empty list", "[]", /^PROVIDER_ROUTES: must list at least one route/],
    ["an object, not a list", JSON.stringify(comet), /^PROVIDER_ROUTES: must be a JSON list of routes/],
    ["an unknown kind", JSON.stringify([{ ...comet, kind: "openai" }]), /^PROVIDER_ROUTES\.0\.kind: must be cometapi, kling or simulator/],
    ["a name unfit for a URL", JSON.stringify([{ ...comet, name: "Comet API/1" }]), /^PROVIDER_ROUTES\.0\.name: must be 1-32 characters/],
    ["two routes of one name", JSON.stringify([comet, { ...kling, name: "comet" }]), /^PROVIDER_ROUTES\.1\.name: 'comet' names two routes/],
    ["no credentials", JSON.stringify([{ ...comet, apiKey: undefined }]), /^PROVIDER_ROUTES\.0\.apiKey: a route needs apiKey, or accessKey \+ secretKey/],
    ["an access key without its secret", JSON.stringify([{ ...kling, secretKey: undefined }]), /^PROVIDER_ROUTES\.0\.secretKey: accessKey and secretKey go together/],
    ["both kinds of credentials", JSON.stringify([{ ...kling, apiKey: "k" }]), /^PROVIDER_ROUTES\.0\.apiKey: give apiKey or accessKey \+ secretKey, not both/],
    ["an access-key pair for CometAPI", JSON.stringify([{ ...comet, apiKey: undefined, accessKey: "a", secretKey: "s" }]), /^PROVIDER_ROUTES\.0\.accessKey: CometAPI takes an apiKey/],
    ["a capacity of 0", JSON.stringify([{ ...comet, capacity: 0 }]), /^PROVIDER_ROUTES\.0\.capacity: must be a whole number from 1 to 10000/],
    ["a missing capacity", JSON.stringify([{ ...comet, capacity: undefined }]), /^PROVIDER_ROUTES\.0\.capacity: /],
    ["a base URL that is not http(s)", JSON.stringify([{ ...comet, baseUrl: "ftp://x" }]), /^PROVIDER_ROUTES\.0\.baseUrl: must be an http\(s\) URL/],
    ["a negative price", JSON.stringify([{ ...comet, unitPrice: -1 }]), /^PROVIDER_ROUTES\.0\.unitPrice: must be a number >= 0/],
    ["an unknown field", JSON.stringify([{ ...comet, capcity: 3 }]), /^PROVIDER_ROUTES\.0: .*capcity/],
    ["a bad webhook secret", JSON.stringify([{ ...comet, webhookSecret: "plain" }]), /^PROVIDER_ROUTES\.0\.webhookSecret/],
  ])("when it is %s, then the worker and the API refuse to start, naming the route and field", (_why, value, message) => {
    expect(problemsOf(() => parseWorkerConfig({ PROVIDER_ROUTES: value }))).toEqual([expect.stringMatching(message)]);
    expect(problemsOf(() => parseApiConfig({ PROVIDER_ROUTES: value }))).toEqual([expect.stringMatching(message)]);
  });

  it("when it is set together with a single-provider variable, then the start is refused naming both", () => {
    expect(problemsOf(() => routesOf({ ...withRoutes([comet]), KLING_API_KEY: "k", PROVIDER: "kling" }))).toEqual([
      "PROVIDER_ROUTES: replaces PROVIDER, KLING_API_KEY; set one or the other",
    ]);
  });

  it("when the single-provider variables are incomplete, then the error is a configuration error too", () => {
    expect(problemsOf(() => routesOf({ PROVIDER: "kling" }))[0]).toMatch(/KLING_API_KEY/);
  });
});
