import type { Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllowedPrivateHost } from "../../apps/domain/http/private-host-allowlist.ts";
import { safeFetch, type SafeFetchOptions } from "../../apps/domain/http/safe-fetch.ts";
import { rejection, startHttpRemote, startRawRemote, type Remote } from "./remote-servers.ts";

// The idle timeout and the total deadline, the size cap, and which HTTP answers may pass on a retry.

let web: Remote;
let raw: Remote;
const timers = new Set<NodeJS.Timeout>();
// The date /503-date last sent in Retry-After.
let retryAt = "";

// Writes `text` one byte every `everyMs` until it is done or the connection closes.
const trickle = (socket: Socket, text: string, everyMs: number) => {
  let at = 0;
  const timer = setInterval(() => {
    if (socket.destroyed || at >= text.length) return clearInterval(timer);
    socket.write(text[at++]!);
  }, everyMs);
  timers.add(timer);
};

beforeAll(async () => {
  raw = await startRawRemote({
    "/trickle-body": (s) => {
      s.write("HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: 100000\r\n\r\n");
      trickle(s, "x".repeat(100_000), 50);
    },
    "/trickle-headers": (s) => trickle(s, `HTTP/1.1 200 OK\r\nx-slow: ${"y".repeat(10_000)}\r\n\r\n`, 50),
  });
  const slowRedirect = (next: string) => (_req: unknown, res: import("node:http").ServerResponse) => {
    timers.add(setTimeout(() => res.writeHead(302, { location: next }).end(), 300));
  };
  web = await startHttpRemote({
    "/slow-1": slowRedirect("/slow-2"),
    "/slow-2": slowRedirect("/slow-3"),
    "/slow-3": slowRedirect("/slow-4"),
    "/slow-4": slowRedirect("/slow-5"),
    "/slow-5": (_req, res) => res.writeHead(200).end("done"),
    "/big-declared": (_req, res) => res.writeHead(200, { "content-length": 2 * 1024 * 1024 }).end(),
    "/big-streamed": (_req, res) => {
      res.writeHead(200);
      for (let i = 0; i < 3; i++) res.write(Buffer.alloc(512 * 1024));
      res.end();
    },
    "/exactly-1mb": (_req, res) => res.writeHead(200).end(Buffer.alloc(1024 * 1024)),
    "/429-seconds": (_req, res) => res.writeHead(429, { "retry-after": "7" }).end(),
    "/503-date": (_req, res) => {
      retryAt = new Date(Date.now() + 60_000).toUTCString();
      res.writeHead(503, { "retry-after": retryAt }).end();
    },
    "/429-forever": (_req, res) => res.writeHead(429, { "retry-after": "99999999" }).end(),
    ...Object.fromEntries(
      [400, 401, 403, 404, 410, 408, 425, 500, 502, 504, 304].map((status) => [
        `/status/${status}`,
        (_req: unknown, res: import("node:http").ServerResponse) => res.writeHead(status).end(),
      ]),
    ),
  });
});
afterAll(async () => {
  for (const timer of timers) clearTimeout(timer);
  await web?.stop();
  await raw?.stop();
});

const options = (extra: Partial<SafeFetchOptions> = {}): SafeFetchOptions => ({
  maxBytes: 1024 * 1024,
  timeoutMs: 1_000,
  totalTimeoutMs: 5_000,
  allowedPrivateHosts: [parseAllowedPrivateHost("127.0.0.1")!],
  ...extra,
});

// Whether a promise settles before a timer of `ms` armed just before it. The fetch's total
// deadline is a timer of the same length armed inside the call: both start from the event loop's
// cached time, so they expire together and the reference, armed first, runs first. A deadline
// that fires early settles the fetch before the reference; nothing a loaded machine does can, as
// both wait in the same timer list (a wall-clock measure here once saw 1,431 ms of a 1,500 ms
// deadline, the clock started late by whatever ran before the call).
const againstReference = async <T>(ms: number, run: () => Promise<T>) => {
  let referenceFired = false;
  const reference = setTimeout(() => (referenceFired = true), ms);
  timers.add(reference);
  const value = await run();
  return { value, settledBeforeReference: !referenceFired };
};

describe("deadlines", () => {
  it("when a server trickles its body a byte at a time, then the fetch ends at the total deadline though it is never idle", async () => {
    const { value: error, settledBeforeReference } = await againstReference(1_500, () =>
      rejection(safeFetch(raw.url("/trickle-body"), options({ timeoutMs: 1_000, totalTimeoutMs: 1_500 }))),
    );
    // The total deadline ended it (the idle one says "without data"), and not before its time; a
    // fetch that never ended would meet the test's timeout.
    expect(error).toMatchObject({ kind: "timeout", retryable: true, publicReason: "timed out after 1.5 s" });
    expect(settledBeforeReference).toBe(false);
  });

  it("when a server trickles its headers, then the fetch ends at the total deadline", async () => {
    const error = await rejection(safeFetch(raw.url("/trickle-headers"), options({ timeoutMs: 1_000, totalTimeoutMs: 800 })));
    expect(error).toMatchObject({ kind: "timeout", publicReason: "timed out after 0.8 s" });
  });

  it("when each redirect is slow, then the total deadline covers the whole chain", async () => {
    // Five hops of 300 ms: each one well inside the idle timeout, the chain past the total.
    const error = await rejection(safeFetch(web.url("/slow-1"), options({ timeoutMs: 1_000, totalTimeoutMs: 700 })));
    expect(error).toMatchObject({ kind: "timeout", publicReason: "timed out after 0.7 s" });
    // The same chain with room to finish (the bound only has to exceed five 300 ms hops on a loaded machine).
    const fetched = await safeFetch(web.url("/slow-1"), options({ timeoutMs: 10_000, totalTimeoutMs: 60_000 }));
    expect(fetched.body.toString()).toBe("done");
  });

  it("when name resolution never answers, then the fetch ends at the total deadline", async () => {
    const lookup = () => new Promise<never>(() => {});
    const error = await rejection(safeFetch("http://stuck.example.com/x.png", options({ lookup, totalTimeoutMs: 300 })));
    expect(error).toMatchObject({ kind: "timeout", retryable: true });
  });
});

describe("size cap", () => {
  it("when a body is larger than maxBytes, declared or streamed, then the fetch rejects as too_large, not retryable", async () => {
    for (const path of ["/big-declared", "/big-streamed"]) {
      const error = await rejection(safeFetch(web.url(path), options()));
      expect(error, path).toMatchObject({ kind: "too_large", retryable: false, publicReason: "larger than the 1 MB limit" });
    }
    expect((await safeFetch(web.url("/exactly-1mb"), options())).body.length).toBe(1024 * 1024);
  });
});

describe("HTTP status classification", () => {
  it.each([400, 401, 403, 404, 410, 304])("when a server answers %i, then the fetch rejects, not retryable", async (status) => {
    const error = await rejection(safeFetch(web.url(`/status/${status}`), options()));
    expect(error).toMatchObject({ kind: "http_status", status, retryable: false, publicReason: `HTTP ${status}` });
  });

  it.each([408, 425, 500, 502, 504])("when a server answers %i, then the fetch rejects, retryable", async (status) => {
    const error = await rejection(safeFetch(web.url(`/status/${status}`), options()));
    expect(error).toMatchObject({ kind: "http_status", status, retryable: true, retryAfterMs: undefined });
  });

  it("when a server asks to retry after seconds or a date, then retryAfterMs says when, capped at five minutes", async () => {
    expect(await rejection(safeFetch(web.url("/429-seconds"), options()))).toMatchObject({ status: 429, retryable: true, retryAfterMs: 7_000 });
    // The delay is the sent date less "now", read somewhere between the call and its answer.
    const askedAt = Date.now();
    const dated = await rejection(safeFetch(web.url("/503-date"), options()));
    const answeredAt = Date.now();
    expect(dated).toMatchObject({ status: 503, retryable: true });
    expect(dated.retryAfterMs).toBeGreaterThanOrEqual(Date.parse(retryAt) - answeredAt);
    expect(dated.retryAfterMs).toBeLessThanOrEqual(Date.parse(retryAt) - askedAt);
    expect(await rejection(safeFetch(web.url("/429-forever"), options()))).toMatchObject({ retryAfterMs: 5 * 60_000 });
  });
});
