import { createServer, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Resolver } from "../../apps/domain/http/address-check.ts";
import { createOriginAgents, type OriginAgents } from "../../apps/domain/http/origin-agents.ts";
import { parseAllowedPrivateHost } from "../../apps/domain/http/private-host-allowlist.ts";
import { safeFetch, type SafeFetchOptions } from "../../apps/domain/http/safe-fetch.ts";
import { rejection } from "./remote-servers.ts";

// Image downloads keep their connections per origin when given agents (the worker's source and
// result downloads): one connection per origin reused, never shared with another origin, a kept one
// never lets a name that resolves to a private address through, an answer not read to its end
// closes its connection, and a kept connection the server dropped while idle costs a resend.

type Host = { port: number; connections: number; requests: number; server: Server; sockets: Set<Socket> };
const IMAGE = Buffer.alloc(20_000, 7);

// `onRequest` answers; by default 200 with IMAGE. It gets the request's socket and whether that
// socket served a request before.
const startHost = async (onRequest?: (socket: Socket, reused: boolean, answer: () => void, path: string) => void): Promise<Host> => {
  const seen = new WeakSet<Socket>();
  const host = { port: 0, connections: 0, requests: 0, sockets: new Set<Socket>() } as Host;
  host.server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      host.requests++;
      const reused = seen.has(req.socket);
      seen.add(req.socket);
      const answer = () => (req.url === "/missing" ? res.writeHead(404).end("no") : res.writeHead(200, { "content-type": "image/png" }).end(IMAGE));
      if (onRequest) onRequest(req.socket, reused, answer, req.url ?? "");
      else answer();
    });
  });
  host.server.on("connection", (socket) => {
    host.connections++;
    host.sockets.add(socket);
    socket.on("close", () => host.sockets.delete(socket));
    socket.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => host.server.listen(0, "127.0.0.1", resolve));
  host.port = (host.server.address() as AddressInfo).port;
  return host;
};
const stop = (host: Host) =>
  new Promise<void>((resolve) => {
    for (const socket of host.sockets) socket.destroy();
    host.server.close(() => resolve());
  });

const INTERNAL_NAME = "images.corp.internal";
const resolver: Resolver = async (hostname) => {
  if (hostname === INTERNAL_NAME) return [{ address: "10.20.30.40", family: 4 }];
  throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: "ENOTFOUND" });
};

let agents: OriginAgents | undefined;
const options = (extra: Partial<SafeFetchOptions> = {}): SafeFetchOptions => ({
  maxBytes: 1_000_000,
  timeoutMs: 2_000,
  totalTimeoutMs: 4_000,
  allowedPrivateHosts: [parseAllowedPrivateHost("127.0.0.1")!],
  lookup: resolver,
  ...(agents ? { agents } : {}),
  ...extra,
});

describe("kept connections to image hosts", () => {
  let one: Host;
  let two: Host;
  beforeAll(async () => {
    one = await startHost();
    two = await startHost();
  });
  afterAll(async () => {
    await stop(one);
    await stop(two);
  });
  afterEach(() => {
    agents?.close();
    agents = undefined;
  });

  it("when several images come from one origin, then they share one connection, and another origin gets a connection of its own", async () => {
    agents = createOriginAgents({ idleMs: 4_000, maxOrigins: 10, maxIdlePerOrigin: 4 });
    const before = [one.connections, one.requests, two.connections, two.requests];
    for (let i = 0; i < 3; i++) expect((await safeFetch(`http://127.0.0.1:${one.port}/a.png`, options())).body.equals(IMAGE)).toBe(true);
    expect((await safeFetch(`http://127.0.0.1:${two.port}/b.png`, options())).body.equals(IMAGE)).toBe(true);
    expect([one.connections, one.requests, two.connections, two.requests].map((n, i) => n - before[i]!)).toEqual([1, 3, 1, 1]);
  });

  it("without agents, then each download connects afresh", async () => {
    const before = one.connections;
    for (let i = 0; i < 2; i++) await safeFetch(`http://127.0.0.1:${one.port}/a.png`, options());
    expect(one.connections - before).toBe(2);
  });

  it("when a name resolving to a private address names the port of a kept connection, then it is still refused at connect", async () => {
    agents = createOriginAgents({ idleMs: 4_000, maxOrigins: 10, maxIdlePerOrigin: 4 });
    await safeFetch(`http://127.0.0.1:${one.port}/a.png`, options());
    const requests = one.requests;
    const error = await rejection(safeFetch(`http://${INTERNAL_NAME}:${one.port}/a.png`, options()));
    expect(error).toMatchObject({ kind: "blocked" });
    expect(one.requests).toBe(requests);
  });

  it("when an answer is refused (not a 200), then its connection is closed, not kept", async () => {
    agents = createOriginAgents({ idleMs: 600_000, maxOrigins: 10, maxIdlePerOrigin: 4 });
    const host = await startHost();
    host.server.keepAliveTimeout = 600_000;
    try {
      await safeFetch(`http://127.0.0.1:${host.port}/a.png`, options());
      expect(host.sockets.size).toBe(1);
      const closed = new Promise<void>((resolve) => [...host.sockets][0]!.once("close", () => resolve()));
      expect(await rejection(safeFetch(`http://127.0.0.1:${host.port}/missing`, options()))).toMatchObject({ kind: "http_status", status: 404 });
      await closed;
      expect(host.sockets.size).toBe(0);
      expect(host.connections).toBe(1);
    } finally {
      await stop(host);
    }
  });
});

describe("a kept connection the image host dropped", () => {
  afterEach(() => {
    agents?.close();
    agents = undefined;
  });

  it("when the host resets a kept connection as the next download arrives on it, then the GET is sent again on a fresh connection and answered", async () => {
    agents = createOriginAgents({ idleMs: 4_000, maxOrigins: 10, maxIdlePerOrigin: 4 });
    const host = await startHost((socket, reused, answer) => (reused ? socket.resetAndDestroy() : answer()));
    try {
      const url = `http://127.0.0.1:${host.port}/a.png`;
      expect((await safeFetch(url, options())).body.equals(IMAGE)).toBe(true);
      expect((await safeFetch(url, options())).body.equals(IMAGE)).toBe(true);
      // The second GET reached the host twice: on the kept connection (reset) and on a new one.
      expect([host.connections, host.requests]).toEqual([2, 3]);
    } finally {
      await stop(host);
    }
  });

  it("when a fresh connection is reset, then the download fails: only a kept one is resent", async () => {
    agents = createOriginAgents({ idleMs: 4_000, maxOrigins: 10, maxIdlePerOrigin: 4 });
    const host = await startHost((socket) => socket.resetAndDestroy());
    try {
      const error = await rejection(safeFetch(`http://127.0.0.1:${host.port}/a.png`, options()));
      expect(error).toMatchObject({ retryable: true });
      expect(host.requests).toBe(1);
    } finally {
      await stop(host);
    }
  });
});
