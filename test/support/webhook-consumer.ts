import { createServer, type IncomingHttpHeaders, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

// A caller's callback endpoint, real HTTP on loopback: it records every request and answers as the
// test scripts it, per path: a status, a redirect, or silence (the connection held open).
export type Received = { path: string; headers: IncomingHttpHeaders; body: string; at: number };
export type Reply = { status: number; location?: string } | "hang";

export type WebhookConsumer = {
  url: string;
  port: number;
  received: Received[];
  // Answers to the next requests on `path`, in order; once used up, 200.
  script(path: string, replies: Reply[]): void;
  // Called with each request as it arrives (before it is answered).
  onRequest(listener: (request: Received) => void): void;
  // Waits until `count` requests on `path` have arrived.
  waitFor(path: string, count: number, timeoutMs?: number): Promise<Received[]>;
  // Waits until `count` distinct events (webhook-ids) have arrived on `path`; returns each event's
  // first arrival, in arrival order. Delivery is at least once: an attempt whose answer came too late
  // is sent again under the same webhook-id, which a consumer drops (Standard Webhooks). A repeat
  // must carry the same body as its first arrival, else this throws.
  waitForEvents(path: string, count: number, timeoutMs?: number): Promise<Received[]>;
  close(): Promise<void>;
};

export const startWebhookConsumer = async (): Promise<WebhookConsumer> => {
  const received: Received[] = [];
  const scripts = new Map<string, Reply[]>();
  const listeners: ((request: Received) => void)[] = [];
  const sockets = new Set<Socket>();
  const held: ServerResponse[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const path = req.url ?? "/";
      const request = { path, headers: req.headers, body: Buffer.concat(chunks).toString("utf8"), at: Date.now() };
      received.push(request);
      for (const listener of listeners) listener(request);
      const reply = scripts.get(path)?.shift() ?? { status: 200 };
      if (reply === "hang") return void held.push(res);
      res.writeHead(reply.status, { "content-type": "text/plain", ...(reply.location ? { location: reply.location } : {}) });
      res.end(`answer ${reply.status}`);
    });
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    received,
    script: (path, replies) => scripts.set(path, [...replies]),
    onRequest: (listener) => listeners.push(listener),
    waitFor: async (path, count, timeoutMs = 15_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const onPath = received.filter((r) => r.path === path);
        if (onPath.length >= count) return onPath;
        if (Date.now() > deadline) throw new Error(`${count} requests on ${path} not seen within ${timeoutMs} ms (saw ${onPath.length})`);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    },
    waitForEvents: async (path, count, timeoutMs = 15_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const first = new Map<string, Received>();
        for (const r of received.filter((r) => r.path === path)) {
          const id = String(r.headers["webhook-id"]);
          const seen = first.get(id);
          if (!seen) first.set(id, r);
          else if (seen.body !== r.body) throw new Error(`webhook-id ${id} arrived twice with different bodies`);
        }
        if (first.size >= count) return [...first.values()];
        if (Date.now() > deadline) throw new Error(`${count} events on ${path} not seen within ${timeoutMs} ms (saw ${first.size})`);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
};
