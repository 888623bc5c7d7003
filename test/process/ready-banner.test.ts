import { describe, expect, it } from "vitest";
import { resolveProviderConfig } from "../../apps/domain/provider/provider-config.schema.ts";
import { readyBanner } from "../../apps/local-stack/ready-banner.ts";
import { parseStackConfig } from "../../apps/local-stack/stack.config.ts";

// The block `npm start` prints once the stack answers: what a newcomer reads to find things.
const bannerFor = (env: Record<string, string>) => {
  const config = parseStackConfig(env);
  const apiUrl = `http://127.0.0.1:${config.PORT}`;
  return readyBanner({ config, apiUrl, publicBaseUrl: apiUrl, provider: resolveProviderConfig(config), simulator: true, pids: "stack 1" });
};

describe("the ready block", () => {
  it("when ADMIN_TOKEN is unset, then it names the queue board and how to turn it on", () => {
    const banner = bannerFor({});
    expect(banner).toMatch(/queues +off: set ADMIN_TOKEN .*http:\/\/127\.0\.0\.1:3000\/admin\/queues/);
  });

  it("when ADMIN_TOKEN is set, then it names the board's address and its credential", () => {
    expect(bannerFor({ ADMIN_TOKEN: "admin-token-0123456789" })).toMatch(/queues +http:\/\/127\.0\.0\.1:3000\/admin\/queues \(ADMIN_TOKEN/);
  });

  it("when METRICS_TOKEN is unset or set, then the metrics line says who can read /metrics", () => {
    expect(bannerFor({})).toMatch(/metrics +http:\/\/127\.0\.0\.1:3000\/metrics \(open to anyone who reaches the port; set METRICS_TOKEN/);
    expect(bannerFor({ METRICS_TOKEN: "metrics-token-0123456789" })).toMatch(/metrics +http:\/\/127\.0\.0\.1:3000\/metrics \(Authorization: Bearer \$METRICS_TOKEN\)/);
  });
});
