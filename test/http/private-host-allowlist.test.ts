import { describe, expect, it } from "vitest";
import { ConfigError } from "../../apps/domain/config/parse-env.ts";
import { isPublicAddress } from "../../apps/domain/http/address-policy.ts";
import { isPrivateHostAllowed } from "../../apps/domain/http/safe-fetch.ts";
import { parseWorkerConfig } from "../../apps/worker/worker.config.ts";

// The rules themselves, without a network: which addresses are public, and what an
// ALLOWED_PRIVATE_HOSTS entry allows.

describe("isPublicAddress", () => {
  it.each(["8.8.8.8", "93.184.215.14", "2001:4860:4860::8888", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"])(
    "when the address is %s, then it is public",
    (address) => expect(isPublicAddress(address)).toBe(true),
  );

  it.each([
    "127.0.0.1", "127.255.255.254", "10.0.0.1", "172.31.255.255", "192.168.0.1", "0.0.0.0", "0.1.2.3", "255.255.255.255",
    "100.64.0.1", "100.127.255.254", "169.254.169.254", "224.0.0.251", "239.255.255.250", "240.0.0.1", "198.18.0.1",
    "198.19.255.254", "192.0.0.8", "192.0.2.1", "198.51.100.1", "203.0.113.1", "::", "::1", "::7f00:1", "::127.0.0.1",
    "::8.8.8.8", "::ffff:127.0.0.1", "::ffff:a00:1", "64:ff9b::7f00:1", "64:ff9b:1::808:808", "2002:7f00:1::",
    "2002:a00:1::", "2001:0:4136:e378:8000:63bf:80ff:fffe", "fc00::1", "fd12:3456::1", "fe80::1", "fe80::1%lo", "fec0::1",
    "ff02::1", "2001:db8::1", "2001:2::1", "100::1", "3fff::1", "not-an-address", "0x7f.1", "2130706433", "",
  ])("when the address is %s, then it is not public", (address) => expect(isPublicAddress(address)).toBe(false));
});

const problemsOf = (env: Record<string, string>): string[] => {
  try {
    parseWorkerConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
};

describe("ALLOWED_PRIVATE_HOSTS", () => {
  it("when entries are hosts, host:port and [v6]:port, then each is parsed with its port or none", () => {
    const config = parseWorkerConfig({ ALLOWED_PRIVATE_HOSTS: " Simulator, 127.0.0.1:3100,[::1]:8080, ::1 ,files_1:80,[fd00::1]" });
    expect(config.ALLOWED_PRIVATE_HOSTS).toEqual([
      { host: "simulator", port: null },
      { host: "127.0.0.1", port: 3100 },
      { host: "::1", port: 8080 },
      { host: "::1", port: null },
      { host: "files_1", port: 80 },
      { host: "fd00::1", port: null },
    ]);
    expect(parseWorkerConfig({}).ALLOWED_PRIVATE_HOSTS).toEqual([]);
  });

  it.each(["host:0", "host:65536", "host:", "host:http", "a b", "[zz::1]:80", "[::1]:", "http://host", "host/path", "user@host", "1.2.3.999"])(
    "when an entry is %s, then the configuration is refused with an error naming it",
    (entry) => {
      const problems = problemsOf({ ALLOWED_PRIVATE_HOSTS: `simulator,${entry}` });
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(/^ALLOWED_PRIVATE_HOSTS/);
      expect(problems[0]).toContain(`"${entry}"`);
    },
  );

  it("when a host:port is allowed, then only that port of that host is, with http and https default ports", () => {
    const env = { ALLOWED_PRIVATE_HOSTS: "api.internal:3000,files.internal,[::1]:443,127.0.0.1:80" };
    const { ALLOWED_PRIVATE_HOSTS: allowed } = parseWorkerConfig(env);
    expect(isPrivateHostAllowed("http://api.internal:3000/x", allowed)).toBe(true);
    expect(isPrivateHostAllowed("http://API.internal:3000/x", allowed)).toBe(true);
    expect(isPrivateHostAllowed("http://api.internal:3001/x", allowed)).toBe(false);
    expect(isPrivateHostAllowed("http://api.internal/x", allowed)).toBe(false);
    expect(isPrivateHostAllowed("http://files.internal:6379/x", allowed)).toBe(true);
    expect(isPrivateHostAllowed("https://[::1]/x", allowed)).toBe(true);
    expect(isPrivateHostAllowed("http://[::1]/x", allowed)).toBe(false);
    expect(isPrivateHostAllowed("http://127.0.0.1/x", allowed)).toBe(true);
    expect(isPrivateHostAllowed("http://2130706433:80/x", allowed)).toBe(true); // the same host, spelt otherwise
    expect(isPrivateHostAllowed("http://127.0.0.1:8080/x", allowed)).toBe(false);
    expect(isPrivateHostAllowed("not a url", allowed)).toBe(false);
  });
});
