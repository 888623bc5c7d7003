import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startStack, type Stack } from "../support/stack.ts";

// /metrics behind METRICS_TOKEN (Bearer) when it is set; open to whoever reaches the port when not.
const token = "metrics-token-0123456789";
let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ withWorker: false, apiEnv: { METRICS_TOKEN: token } });
});
afterAll(async () => {
  await stack?.stop();
});

const scrape = (baseUrl: string, authorization?: string) =>
  fetch(`${baseUrl}/metrics`, { headers: authorization === undefined ? {} : { authorization } });

describe("/metrics with METRICS_TOKEN", () => {
  it("when METRICS_TOKEN is set and a scrape carries no token or a wrong one, then it is a 401 that names the Bearer scheme and shows no metric", async () => {
    for (const authorization of [undefined, "Bearer wrong-token-0123456789", `Basic ${Buffer.from(`x:${token}`).toString("base64")}`, token]) {
      const res = await scrape(stack.api.url, authorization);
      expect(res.status, String(authorization)).toBe(401);
      expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
      const body = await res.text();
      expect(body).not.toMatch(/^# HELP/m);
      expect(body).toContain("METRICS_TOKEN");
    }
  });

  it("when METRICS_TOKEN is set and a scrape carries it as a Bearer token, then the metrics are served", async () => {
    const res = await scrape(stack.api.url, `Bearer ${token}`);
    expect(res.status).toBe(200);
    expect(await res.text()).toMatch(/^# HELP /m);
  });

  it("when METRICS_TOKEN is unset, then /metrics is open to anyone who reaches the port", async () => {
    const open = await stack.startApi({ METRICS_TOKEN: "" });
    const res = await scrape(open.url);
    expect(res.status).toBe(200);
    expect(await res.text()).toMatch(/^# HELP /m);
  });

  it("when METRICS_TOKEN is too short to be a secret, then the API refuses the configuration", async () => {
    await expect(stack.startApi({ METRICS_TOKEN: "short" })).rejects.toThrow(/METRICS_TOKEN/);
  });
});
