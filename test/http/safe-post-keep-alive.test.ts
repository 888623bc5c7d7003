import { createServer, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Resolver } from "../../apps/domain/http/address-check.ts";
import { createOriginAgents, type OriginAgents } from "../../apps/domain/http/origin-agents.ts";
import { parseAllowedPrivateHost } from "../../apps/domain/http/private-host-allowlist.ts";
import { safePost, type SafePostOptions } from "../../apps/domain/http/safe-post.ts";
import { rejection } from "./remote-servers.ts";

// Outbound callbacks keep their connections to a consumer open between POSTs: one connection per
// origin reused, never shared with another origin (whose address check it did not pass), and a kept
// connection the consumer dropped while idle costs a resend, not a failed attempt.

type Consumer = { port: number; connections: number; requests: number; server: Server; sockets: Set<Socket> };

// `onRequest` answers; by default 204. It gets the request's socket and whether that socket served
// a request before.
const startConsumer = async (onRequest?: (socket: Socket, reused: boolean, answer: () => void) => void): Promise<Consumer> => {
  const seen = new WeakSet<Socket>();
  const consumer = { port: 0, connections: 0, requests: 0, sockets: new Set<Socket>() } as Consumer;
  consumer.server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      consumer.requests++;
      const reused = seen.has(req.socket);
      seen.add(req.socket);
      const answer = () => res.writeHead(204).end();
      if (onRequest) onRequest(req.socket, reused, answer);
      else answer();
    });
  });
  consumer.server.on("connection", (socket) => {
    consumer.connections++;
    consumer.sockets.add(socket);
    socket.on("close", () => consumer.sockets.delete(socket));
    socket.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => consumer.server.listen(0, "127.0.0.1", resolve));
  consumer.port = (consumer.server.address() as AddressInfo).port;
  return consumer;
};
const stop = (consumer: Consumer) =>
  new Promise<void>((resolve) => {
    for (const socket of consumer.sockets) socket.destroy();
    consumer.server.close(() => resolve());
  });

const INTERNAL_NAME = "hooks.corp.internal";
const resolver: Resolver = async (hostname) => {
  if (hostname === INTERNAL_NAME) return [{ address: "10.20.30.40", family: 4 }];
  throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: "ENOTFOUND" });
};

let agents: OriginAgents;
const options = (extra: Partial<SafePostOptions> = {}): SafePostOptions => ({
  body: JSON.stringify({ hello: "world" }),
  headers: { "content-type": "application/json" },
  timeoutMs: 2_000,
  maxResponseBytes: 2_048,
  allowedPrivateHosts: [parseAllowedPrivateHost("127.0.0.1")!],
  lookup: resolver,
  agents,
  ...extra,
});

describe("kept connections to consumers", () => {
  let one: Consumer;
  let two: Consumer;
  beforeAll(async () => {
    one = await startConsumer();
    two = await startConsumer();
  });
  afterAll(async () => {
    await stop(one);
    await stop(two);
  });
  afterEach(() => agents?.close());

  it("when several POSTs go to one origin, then they share one connection, and another origin gets a connection of its own", async () => {
    agents = createOriginAgents({ idleMs: 4_000, maxOrigins: 10, maxIdlePerOrigin: 4 });
    for (let i = 0; i < 3; i++) expect((await safePost(`http://127.0.0.1:${one.port}/hook`, options())).status).toBe(204);
    expect(await safePost(`http://127.0.0.1:${two.port}/hook`, options())).toMatchObject({ status: 204 });
    expect([one.connections, one.requests]).toEqual([1, 3]);
    expect([two.connections, two.requests]).toEqual([1, 1]);
  });

  it("without agents, then each POST connects afresh", async () => {
    const before = one.connections;
    for (let i = 0; i < 2; i++) expect((await safePost(`http://127.0.0.1:${one.port}/hook`, options({ agents: undefined }))).status).toBe(204);
    expect(one.connections - before).toBe(2);
  });

  it("when a name resolving to a private address names the port of a kept connection, then it is still refused at connect", async () => {
    agents = createOriginAgents({ idleMs: 4_000, maxOrigins: 10, maxIdlePerOrigin: 4 });
    expect((await safePost(`http://127.0.0.1:${one.port}/hook`, options())).status).toBe(204);
    const requests = one.requests;
    const error = await rejection(safePost(`http://${INTERNAL_NAME}:${one.port}/hook`, options()));
    expect(error).toMatchObject({ kind: "blocked", publicReason: "the host name does not resolve to a public address" });
    expect(one.requests).toBe(requests);
  });

  it("when the answer is cut short at the size limit, then its connection is closed, not kept", async () => {
    // Idle connections would last longer than the test (ours, and the server's Keep-Alive hint):
    // only our hanging up closes this one.
    agents = createOriginAgents({ idleMs: 600_000, maxOrigins: 10, maxIdlePerOrigin: 4 });
    const big = await startConsumer();
    big.server.keepAliveTimeout = 600_000;
    big.server.removeAllListeners("request");
    const closed = new Promise<void>((resolve) =>
      big.server.on("request", (req, res) => {
        req.socket.once("close", () => resolve());
        req.resume();
        // More than the limit, and more than the socket buffers take in at once: the rest waits for a reader.
        req.on("end", () => res.writeHead(200).end(Buffer.alloc(4 * 1024 * 1024, 97)));
      }),
    );
    try {
      const answer = await safePost(`http://127.0.0.1:${big.port}/hook`, options({ maxResponseBytes: 16 }));
      expect(answer).toMatchObject({ status: 200, body: "a".repeat(16) });
      await closed;
      expect(big.sockets.size).toBe(0);
    } finally {
      await stop(big);
    }
  });
});

describe("a kept connection the consumer dropped", () => {
  let consumer: Consumer;
  afterAll(() => stop(consumer));

  it("when the consumer resets a kept connection as the next POST arrives on it, then the POST is sent again on a fresh connection and answered", async () => {
    agents = createOriginAgents({ idleMs: 4_000, maxOrigins: 10, maxIdlePerOrigin: 4 });
    consumer = await startConsumer((socket, reused, answer) => (reused ? socket.resetAndDestroy() : answer()));
    const url = `http://127.0.0.1:${consumer.port}/hook`;
    expect((await safePost(url, options())).status).toBe(204);
    expect((await safePost(url, options())).status).toBe(204);
    // The second POST reached the consumer twice: on the kept connection (reset) and on a new one.
    expect([consumer.connections, consumer.requests]).toEqual([2, 3]);
    agents.close();
  });

  it("when a fresh connection is reset, then the attempt fails: only a kept one is resent", async () => {
    agents = createOriginAgents({ idleMs: 4_000, maxOrigins: 10, maxIdlePerOrigin: 4 });
    const resetting = await startConsumer((socket) => socket.resetAndDestroy());
    try {
      const error = await rejection(safePost(`http://127.0.0.1:${resetting.port}/hook`, options()));
      expect(error).toMatchObject({ kind: "unreachable" });
      expect(resetting.requests).toBe(1);
    } finally {
      await stop(resetting);
      agents.close();
    }
  });
});
