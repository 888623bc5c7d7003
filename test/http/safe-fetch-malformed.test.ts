import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllowedPrivateHost } from "../../apps/domain/http/private-host-allowlist.ts";
import { safeFetch, type SafeFetchOptions } from "../../apps/domain/http/safe-fetch.ts";
import { closedPort, rejection, startHttpRemote, startRawRemote, type Remote } from "./remote-servers.ts";

// Whatever a remote server answers, the fetcher's promise rejects with a SafeFetchError and nothing
// is thrown anywhere else (vitest fails a file on an uncaught exception, so each rejection test also
// shows the process survived it).

let web: Remote;
let raw: Remote;
const image = Buffer.alloc(2048, 7);

const head = (lines: string[]) => `${lines.join("\r\n")}\r\n\r\n`;
const ok = (extra: string[] = []) => head(["HTTP/1.1 200 OK", "content-type: image/png", ...extra]);

beforeAll(async () => {
  web = await startHttpRemote({
    "/image.png": (_req, res) => res.writeHead(200, { "content-type": "image/png" }).end(image),
    "/bad-location": (_req, res) => res.writeHead(302, { location: "http://[::1" }).end(),
    "/file-location": (_req, res) => res.writeHead(302, { location: "file:///etc/passwd" }).end(),
    "/javascript-location": (_req, res) => res.writeHead(301, { location: "javascript:alert(1)" }).end(),
    "/empty-location": (_req, res) => res.writeHead(302, { location: "" }).end(),
    "/no-location": (_req, res) => res.writeHead(307).end(),
    "/loop-a": (_req, res) => res.writeHead(302, { location: "/loop-b" }).end(),
    "/loop-b": (_req, res) => res.writeHead(302, { location: "/loop-a" }).end(),
    ...Object.fromEntries(
      Array.from({ length: 8 }, (_, i) => [`/hop/${i}`, (_req: unknown, res: import("node:http").ServerResponse) => {
        if (i === 5) res.writeHead(200, { "content-type": "image/png" }).end(image);
        else res.writeHead(308, { location: `/hop/${i + 1}` }).end();
      }]),
    ),
    "/gzip-bad": (_req, res) => res.writeHead(200, { "content-encoding": "gzip" }).end(Buffer.from("not gzip at all")),
    "/gzip-good": (_req, res) => res.writeHead(200, { "content-encoding": "gzip" }).end(gzipSync(image)),
    "/deflate-bad": (_req, res) => res.writeHead(200, { "content-encoding": "deflate" }).end(Buffer.from([1, 2, 3, 4])),
    "/chunked": (_req, res) => {
      res.writeHead(200, { "content-type": "image/png" });
      res.write(image.subarray(0, 1000));
      res.end(image.subarray(1000));
    },
  });
  raw = await startRawRemote({
    "/garbage": (s) => s.end("\x00\x01\x02 this is not HTTP at all\r\n\r\n"),
    "/bad-header-value": (s) => s.end(`${ok(["x-thing: a\x01b", "content-length: 3"])}abc`),
    "/bad-header-name": (s) => s.end(`${ok(["x thing: ab", "content-length: 3"])}abc`),
    "/bad-content-length": (s) => s.end(`${ok(["content-length: 12abc"])}abc`),
    "/two-content-lengths": (s) => s.end(`${ok(["content-length: 3", "content-length: 4"])}abcd`),
    "/longer-than-declared": (s) => s.end(`${ok(["content-length: 3"])}abcdefghijklmnop`),
    "/shorter-than-declared": (s) => s.end(`${ok(["content-length: 100"])}abc`),
    "/reset-mid-body": (s) => {
      s.write(`${ok(["content-length: 100000"])}${"x".repeat(1000)}`);
      setTimeout(() => s.resetAndDestroy(), 50);
    },
    "/bad-chunk-size": (s) => s.end(`${ok(["transfer-encoding: chunked"])}zz\r\nabc\r\n0\r\n\r\n`),
    "/chunks-cut-short": (s) => s.end(`${ok(["transfer-encoding: chunked"])}3\r\nabc\r\n`),
    "/header-overflow": (s) => s.end(`${ok([`x-big: ${"a".repeat(100_000)}`, "content-length: 3"])}abc`),
    "/switching-protocols": (s) => s.end(head(["HTTP/1.1 101 Switching Protocols", "upgrade: websocket", "connection: upgrade"])),
    "/status-999": (s) => s.end(`${head(["HTTP/1.1 999 Whatever", "content-length: 3"])}abc`),
    "/never-ends": (s) => s.write(`${ok(["content-length: 100000"])}abc`),
    "/hang-up": (s) => s.end(),
    "/reset-before-answer": (s) => s.resetAndDestroy(),
  });
});
afterAll(async () => {
  await web?.stop();
  await raw?.stop();
});

const options = (extra: Partial<SafeFetchOptions> = {}): SafeFetchOptions => ({
  maxBytes: 1024 * 1024,
  timeoutMs: 2_000,
  totalTimeoutMs: 5_000,
  allowedPrivateHosts: [parseAllowedPrivateHost("127.0.0.1")!],
  ...extra,
});

describe("safeFetch against well-behaved servers", () => {
  it("when a server answers 200 with a body (plain or chunked), then the bytes come back whole", async () => {
    for (const path of ["/image.png", "/chunked"]) {
      const fetched = await safeFetch(web.url(path), options());
      expect(fetched.body.equals(image)).toBe(true);
      expect(fetched.contentType).toBe("image/png");
    }
  });

  it("when a chain of exactly maxRedirects redirects ends in an image, then it is followed to the end", async () => {
    const fetched = await safeFetch(web.url("/hop/0"), options({ maxRedirects: 5 }));
    expect(fetched.finalUrl).toBe(web.url("/hop/5"));
  });
});

describe("safeFetch against bad redirects", () => {
  it.each([
    { what: "an unparseable Location (http://[::1)", path: "/bad-location" },
    { what: "a file: Location", path: "/file-location" },
    { what: "a javascript: Location", path: "/javascript-location" },
    { what: "an empty Location", path: "/empty-location" },
    { what: "no Location at all", path: "/no-location" },
    { what: "a redirect loop", path: "/loop-a" },
  ])("when a server redirects with $what, then the fetch rejects as bad_redirect, not retryable", async ({ path }) => {
    const error = await rejection(safeFetch(web.url(path), options()));
    expect(error).toMatchObject({ kind: "bad_redirect", retryable: false });
    expect(error.publicReason).not.toContain("127.0.0.1");
  });

  it("when a chain is one redirect longer than maxRedirects, then the fetch rejects as bad_redirect", async () => {
    const error = await rejection(safeFetch(web.url("/hop/0"), options({ maxRedirects: 4 })));
    expect(error).toMatchObject({ kind: "bad_redirect", retryable: false, publicReason: "more than 4 redirects" });
  });
});

describe("safeFetch against broken HTTP", () => {
  it.each([
    { what: "garbage instead of HTTP", path: "/garbage" },
    { what: "a control character in a header value", path: "/bad-header-value" },
    { what: "a space in a header name", path: "/bad-header-name" },
    { what: "a non-numeric Content-Length", path: "/bad-content-length" },
    { what: "two different Content-Lengths", path: "/two-content-lengths" },
    { what: "more bytes than its Content-Length", path: "/longer-than-declared" },
    { what: "a bad chunk size", path: "/bad-chunk-size" },
    { what: "100 kB of headers", path: "/header-overflow" },
  ])("when a server sends $what, then the fetch rejects as malformed, not retryable", async ({ path }) => {
    const error = await rejection(safeFetch(raw.url(path), options()));
    expect(error).toMatchObject({ kind: "malformed", retryable: false, publicReason: "the server's answer was malformed" });
  });

  // We send Accept-Encoding: identity and never decompress: an encoded body is refused whatever its
  // content, rather than handed on as an image that is not one.
  it.each(["/gzip-bad", "/deflate-bad", "/gzip-good"])(
    "when a server claims a content-encoding (%s), then the fetch rejects as malformed, not retryable",
    async (path) => {
      const error = await rejection(safeFetch(web.url(path), options()));
      expect(error).toMatchObject({ kind: "malformed", retryable: false });
      expect(error.publicReason).toMatch(/compressed/);
    },
  );

  // A body cut short cannot be told from a lying Content-Length: both may pass on another try.
  it.each([
    { what: "closes before its Content-Length", path: "/shorter-than-declared" },
    { what: "resets the connection mid-body", path: "/reset-mid-body" },
    { what: "closes before the last chunk", path: "/chunks-cut-short" },
  ])("when a server $what, then the fetch rejects as interrupted, retryable", async ({ path }) => {
    const error = await rejection(safeFetch(raw.url(path), options()));
    expect(error).toMatchObject({ kind: "interrupted", retryable: true, publicReason: "the connection was cut before the answer was complete" });
  });

  it("when a server answers 101 Switching Protocols to a plain GET, then the fetch rejects as malformed at once", async () => {
    const error = await rejection(safeFetch(raw.url("/switching-protocols"), options({ timeoutMs: 5_000, totalTimeoutMs: 10_000 })));
    expect(error).toMatchObject({ kind: "malformed", retryable: false });
  });

  it("when a server answers a status outside HTTP's (999), then the fetch rejects as http_status, not retryable", async () => {
    const error = await rejection(safeFetch(raw.url("/status-999"), options()));
    expect(error).toMatchObject({ kind: "http_status", status: 999, retryable: false, publicReason: "HTTP 999" });
  });

  it("when a server sends part of the body and then nothing, then the fetch ends at the idle timeout, retryable", async () => {
    const error = await rejection(safeFetch(raw.url("/never-ends"), options({ timeoutMs: 300 })));
    expect(error).toMatchObject({ kind: "timeout", retryable: true, publicReason: "timed out after 0.3 s without data" });
  });

  it("when a port refuses, a server hangs up or resets before answering, then each rejects as unreachable with the same public words", async () => {
    const refused = await rejection(safeFetch(`http://127.0.0.1:${await closedPort()}/x.png`, options()));
    const hungUp = await rejection(safeFetch(raw.url("/hang-up"), options()));
    const reset = await rejection(safeFetch(raw.url("/reset-before-answer"), options()));
    for (const error of [refused, hungUp, reset]) {
      expect(error).toMatchObject({ kind: "unreachable", retryable: true, publicReason: "the host could not be reached" });
    }
    expect(refused.message).toMatch(/ECONNREFUSED/);
  });
});
