import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Resolver } from "../../apps/domain/http/address-check.ts";
import { parseAllowedPrivateHost, type AllowedPrivateHost } from "../../apps/domain/http/private-host-allowlist.ts";
import { checkUrlAddress, safeFetch, type SafeFetchOptions } from "../../apps/domain/http/safe-fetch.ts";
import { rejection, startHttpRemote, type Remote } from "./remote-servers.ts";

// Outbound requests reach public addresses only: names are checked on the addresses the socket
// actually connects to (its lookup), literal IPs before connecting, and both again on every redirect.
// Names resolve through an injected resolver, so that "a name that resolves to ::7f00:1" is real.

let one: Remote;
let two: Remote;
const image = Buffer.alloc(512, 9);
const INTERNAL_NAME = "secret-db.corp.internal";
const INTERNAL_ADDRESS = "10.20.30.40";

const allow = (...entries: string[]): AllowedPrivateHost[] => entries.map((e) => parseAllowedPrivateHost(e)!);

// Every name in `table` resolves to its addresses; any other name does not exist.
const resolverOf = (table: Record<string, string[]>): Resolver => async (hostname) => {
  const addresses = table[hostname];
  if (!addresses) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: "ENOTFOUND" });
  return addresses.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }));
};

beforeAll(async () => {
  two = await startHttpRemote({ "/image.png": (_req, res) => res.writeHead(200).end(image) });
  one = await startHttpRemote({
    "/image.png": (_req, res) => res.writeHead(200).end(image),
    "/to-other-port": (_req, res) => res.writeHead(302, { location: two.url("/image.png") }).end(),
    "/to-internal-name": (_req, res) => res.writeHead(302, { location: `http://${INTERNAL_NAME}:${two.port}/image.png` }).end(),
    "/to-literal": (_req, res) => res.writeHead(302, { location: "http://169.254.169.254/latest/meta-data/" }).end(),
  });
});
afterAll(async () => {
  await one?.stop();
  await two?.stop();
});

const options = (extra: Partial<SafeFetchOptions> = {}): SafeFetchOptions => ({
  maxBytes: 1024 * 1024,
  timeoutMs: 2_000,
  totalTimeoutMs: 5_000,
  allowedPrivateHosts: [],
  ...extra,
});

const embedded = [
  { form: "IPv4-compatible ::7f00:1", address: "::7f00:1" },
  { form: "IPv4-compatible ::a14:1e28 (10.20.30.40)", address: "::a14:1e28" },
  { form: "IPv4-mapped ::ffff:127.0.0.1", address: "::ffff:127.0.0.1" },
  { form: "NAT64 64:ff9b::7f00:1", address: "64:ff9b::7f00:1" },
  { form: "NAT64 64:ff9b::a14:1e28 (10.20.30.40)", address: "64:ff9b::a14:1e28" },
  { form: "6to4 2002:7f00:1::1", address: "2002:7f00:1::1" },
  { form: "6to4 2002:c0a8:101::1 (192.168.1.1)", address: "2002:c0a8:101::1" },
  { form: "Teredo with client 127.0.0.1", address: "2001:0:4136:e378:8000:63bf:80ff:fffe" },
  { form: "Teredo with server 10.0.0.1", address: "2001:0:a00:1::1" },
];
const plain = [
  "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "0.0.0.0", "255.255.255.255", "100.64.0.1",
  "169.254.169.254", "224.0.0.1", "240.0.0.1", "198.18.0.1", "192.0.2.1", "::", "::1", "fd00::1",
  "fe80::1", "ff02::1", "2001:db8::1", "2001:2::1", "64:ff9b:1::808:808",
].map((address) => ({ form: address, address }));

describe("addresses a name resolves to", () => {
  it.each([...embedded, ...plain])(
    "when a name resolves to $form, then the fetch is refused at connect time, not retryable, without naming it",
    async ({ address }) => {
      const error = await rejection(
        safeFetch(`http://${INTERNAL_NAME}:${one.port}/image.png`, options({ lookup: resolverOf({ [INTERNAL_NAME]: [address] }) })),
      );
      expect(error).toMatchObject({ kind: "blocked", retryable: false, publicReason: "the host name does not resolve to a public address" });
      expect(error.message).toContain(address); // the log keeps the detail
    },
  );

  it("when a name resolves to a public and a private address, then it is refused as a whole", async () => {
    const lookup = resolverOf({ [INTERNAL_NAME]: ["8.8.8.8", "127.0.0.1"] });
    const error = await rejection(safeFetch(`http://${INTERNAL_NAME}:${one.port}/image.png`, options({ lookup })));
    expect(error.kind).toBe("blocked");
  });

  it("when a name does not exist, then the caller reads the same words as for a private name", async () => {
    const error = await rejection(safeFetch("http://no-such-host.corp.internal/x.png", options({ lookup: resolverOf({}) })));
    expect(error).toMatchObject({ kind: "unresolved", retryable: false, publicReason: "the host name does not resolve to a public address" });
  });
});

describe("literal addresses in URLs", () => {
  it.each([
    { url: "http://127.0.0.1:1/x.png", named: "127.0.0.1" },
    { url: "http://2130706433/x.png", named: "127.0.0.1" }, // the URL parser's spelling of 127.0.0.1
    { url: "http://[::7f00:1]/x.png", named: "::7f00:1" },
    { url: "http://[::ffff:127.0.0.1]/x.png", named: "::ffff:7f00:1" },
    { url: "http://[64:ff9b::7f00:1]/x.png", named: "64:ff9b::7f00:1" },
    { url: "http://0.0.0.0/x.png", named: "0.0.0.0" },
    { url: "http://[fe80::1]/x.png", named: "fe80::1" },
  ])("when the caller's URL is $url, then it is refused before connecting and the reason names $named", async ({ url, named }) => {
    const error = await rejection(safeFetch(url, options()));
    expect(error).toMatchObject({ kind: "blocked", retryable: false });
    expect(error.publicReason).toBe(`the URL must point to a public http(s) address (${named} is not public)`);
  });

  it.each(["ftp://example.com/x.png", "file:///etc/passwd", "not a url", "http://[::1/x.png"])(
    "when the caller's URL is %s, then it is refused as invalid_url",
    async (url) => {
      expect(await rejection(safeFetch(url, options()))).toMatchObject({ kind: "invalid_url", retryable: false });
    },
  );
});

describe("ALLOWED_PRIVATE_HOSTS by host:port", () => {
  it("when 127.0.0.1:<port> is allowed, then that port is fetched and another port on the same host is refused", async () => {
    const allowed = allow(`127.0.0.1:${one.port}`);
    expect((await safeFetch(one.url("/image.png"), options({ allowedPrivateHosts: allowed }))).body.equals(image)).toBe(true);
    const error = await rejection(safeFetch(two.url("/image.png"), options({ allowedPrivateHosts: allowed })));
    expect(error).toMatchObject({ kind: "blocked", retryable: false });
  });

  it("when a name:port is allowed, then the name may resolve privately on that port only", async () => {
    const lookup = resolverOf({ "images.internal": ["127.0.0.1"] });
    const allowed = allow(`images.internal:${one.port}`);
    const fetched = await safeFetch(`http://images.internal:${one.port}/image.png`, options({ allowedPrivateHosts: allowed, lookup }));
    expect(fetched.body.equals(image)).toBe(true);
    const other = await rejection(safeFetch(`http://images.internal:${two.port}/image.png`, options({ allowedPrivateHosts: allowed, lookup })));
    expect(other.kind).toBe("blocked");
  });

  it("when a bare host is allowed, then every port on it is", async () => {
    const fetched = await safeFetch(two.url("/image.png"), options({ allowedPrivateHosts: allow("127.0.0.1") }));
    expect(fetched.body.equals(image)).toBe(true);
  });

  it("when an allowed host:port redirects to another port, a private name or a literal, then every hop is checked again", async () => {
    const allowed = allow(`127.0.0.1:${one.port}`);
    const lookup = resolverOf({ [INTERNAL_NAME]: [INTERNAL_ADDRESS] });
    const toPort = await rejection(safeFetch(one.url("/to-other-port"), options({ allowedPrivateHosts: allowed })));
    const toName = await rejection(safeFetch(one.url("/to-internal-name"), options({ allowedPrivateHosts: allowed, lookup })));
    const toLiteral = await rejection(safeFetch(one.url("/to-literal"), options({ allowedPrivateHosts: allowed })));
    for (const error of [toPort, toName, toLiteral]) expect(error).toMatchObject({ kind: "blocked", retryable: false });
    // What the redirect's name resolves to, and the name itself, stay out of what a caller reads.
    expect(toName.publicReason).toBe("the host name does not resolve to a public address");
    expect(toName.message).toContain(INTERNAL_ADDRESS);
  });
});

describe("what a caller may read", () => {
  it("when fetches fail on internal names, private resolutions, refused ports and redirects to them, then no publicReason names them", async () => {
    const lookup = resolverOf({ [INTERNAL_NAME]: [INTERNAL_ADDRESS], "loopback.corp.internal": ["127.0.0.1"] });
    const allowed = allow(`127.0.0.1:${one.port}`, "loopback.corp.internal");
    const failures = await Promise.all(
      [
        `http://${INTERNAL_NAME}/image.png`,
        `http://${INTERNAL_NAME}:5432/`,
        "http://missing.corp.internal/image.png",
        "http://loopback.corp.internal:1/image.png", // allowed, so it connects: a refused port
        one.url("/to-internal-name"),
        // (A literal IP in a URL or a redirect may be named: whoever wrote the URL wrote it.)
      ].map((url) => rejection(safeFetch(url, options({ allowedPrivateHosts: allowed, lookup })))),
    );
    for (const error of failures) {
      for (const secret of [INTERNAL_NAME, "corp.internal", INTERNAL_ADDRESS, "127.0.0.1", String(two.port), "5432", "ECONN"]) {
        expect(error.publicReason, error.message).not.toContain(secret);
      }
    }
  });
});

describe("checkUrlAddress (the same rule without fetching)", () => {
  const lookup = resolverOf({ [INTERNAL_NAME]: [INTERNAL_ADDRESS], "hooks.example.com": ["93.184.215.14"], v6: ["::7f00:1"] });

  it("when a URL's host is public or an allowed host:port, then it resolves", async () => {
    await expect(checkUrlAddress("https://hooks.example.com/cb", [], lookup)).resolves.toBeUndefined();
    await expect(checkUrlAddress("http://8.8.8.8/cb", [])).resolves.toBeUndefined(); // no DNS for literals
    await expect(checkUrlAddress(`http://${INTERNAL_NAME}:8080/cb`, allow(`${INTERNAL_NAME}:8080`), lookup)).resolves.toBeUndefined();
  });

  it("when a URL's host is private, not allowed on that port, unknown or not http(s), then it rejects as a fetch would", async () => {
    const cases = [
      { url: `http://${INTERNAL_NAME}/cb`, allowed: allow(`${INTERNAL_NAME}:8080`), kind: "blocked" },
      { url: "http://v6/cb", allowed: [], kind: "blocked" },
      { url: "http://[::ffff:10.0.0.1]/cb", allowed: [], kind: "blocked" },
      { url: "http://localhost:3000/cb", allowed: [], kind: "blocked", system: true },
      { url: "http://nowhere.corp.internal/cb", allowed: [], kind: "unresolved" },
      { url: "gopher://hooks.example.com/", allowed: [], kind: "invalid_url" },
    ];
    for (const c of cases) {
      const error = await rejection(checkUrlAddress(c.url, c.allowed, c.system ? undefined : lookup));
      expect(error, c.url).toMatchObject({ kind: c.kind, retryable: false });
    }
  });

  it("when DNS fails for a while (EAI_AGAIN), then it rejects as unreachable, retryable", async () => {
    const flaky: Resolver = async () => {
      throw Object.assign(new Error("getaddrinfo EAI_AGAIN"), { code: "EAI_AGAIN" });
    };
    expect(await rejection(checkUrlAddress("http://hooks.example.com/cb", [], flaky))).toMatchObject({ kind: "unreachable", retryable: true });
  });
});
