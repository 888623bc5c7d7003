import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import net, { type AddressInfo } from "node:net";
import { expect } from "vitest";
import { SafeFetchError } from "../../apps/domain/http/safe-fetch.ts";

// Hostile image hosts for the fetcher's tests: real servers on loopback, started per test file.

export type Remote = { port: number; url: (path: string) => string; stop: () => Promise<void> };

const listen = async (server: net.Server, sockets: Set<net.Socket>): Promise<Remote> => {
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {}); // the fetcher hangs up on purpose in many of these tests
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    port,
    url: (path) => `http://127.0.0.1:${port}${path}`,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
};

// An HTTP server whose routes may answer anything node:http lets them.
export const startHttpRemote = (routes: Record<string, (req: IncomingMessage, res: ServerResponse) => void>) => {
  const server = createServer((req, res) => {
    const route = routes[req.url ?? ""];
    if (route) route(req, res);
    else res.writeHead(404).end("no such route");
  });
  return listen(server, new Set());
};

// A TCP server that writes whatever it is told once the request has arrived: garbage, broken
// framing, lying headers. The handler gets the socket, to write, stall, close or reset it.
export const startRawRemote = (routes: Record<string, (socket: net.Socket) => void>) => {
  const server = net.createServer((socket) => {
    let head = "";
    const onData = (chunk: Buffer) => {
      head += chunk.toString("latin1");
      if (!head.includes("\r\n\r\n")) return;
      socket.off("data", onData);
      const path = head.split(" ")[1] ?? "";
      const route = routes[path];
      if (route) route(socket);
      else socket.end("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
    };
    socket.on("data", onData);
  });
  return listen(server, new Set());
};

// A port nothing listens on (taken from the OS, then released).
export const closedPort = async (): Promise<number> => {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
};

// The promise must reject with a SafeFetchError (anything else, or a resolve, fails the test).
export const rejection = async (promise: Promise<unknown>): Promise<SafeFetchError> => {
  const outcome = await promise.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  if ("value" in outcome) throw new Error(`expected a rejection, got ${JSON.stringify(outcome.value).slice(0, 200)}`);
  expect(outcome.error).toBeInstanceOf(SafeFetchError);
  return outcome.error as SafeFetchError;
};
