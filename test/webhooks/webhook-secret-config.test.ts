import { describe, expect, it } from "vitest";
import { parseApiConfig } from "../../apps/api/api.config.ts";
import { ConfigError } from "../../apps/domain/config/parse-env.ts";

const secret = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI=";

describe("PROVIDER_WEBHOOK_SECRET", () => {
  it("when it is unset or empty, then callbacks are not required to be signed", () => {
    expect(parseApiConfig({}).PROVIDER_WEBHOOK_SECRET).toBeUndefined();
    expect(parseApiConfig({ PROVIDER_WEBHOOK_SECRET: "" }).PROVIDER_WEBHOOK_SECRET).toBeUndefined();
  });

  it("when it lists two secrets for rotation, then both are kept", () => {
    const next = "whsec_bmV4dHNlY3JldA==";
    expect(parseApiConfig({ PROVIDER_WEBHOOK_SECRET: `${secret}, ${next}` }).PROVIDER_WEBHOOK_SECRET).toEqual([secret, next]);
  });

  it("when one entry is not whsec_ followed by base64, then the boot fails naming the variable, not the secret", () => {
    let error: unknown;
    try {
      parseApiConfig({ PROVIDER_WEBHOOK_SECRET: `${secret},whsec_not-base64!` });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems;
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^PROVIDER_WEBHOOK_SECRET\b.*: must be whsec_ followed by Base64/);
    expect(problems[0]).not.toContain("not-base64");
  });
});
