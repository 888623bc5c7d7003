import { once } from "node:events";
import http from "node:http";
import net from "node:net";
import type { LogDestination } from "../../apps/domain/logging/logger.ts";

// Tools for sending what a browser or fetch would never send: raw paths (fetch normalises and
// re-encodes them), declared bodies that are never sent, and the API's own log lines to read back.

export type LogLine = { level: number; msg?: string; err?: { type?: string; message?: string; stack?: string } } & Record<string, unknown>;

// A pino destination that keeps every line; `errors()` is what was logged at error level or above.
export const captureLogs = () => {
  const lines: LogLine[] = [];
  const destination: LogDestination = {
    write: (line: string) => {
      lines.push(JSON.parse(line) as LogLine);
    },
  };
  return {
    destination,
    lines: () => lines,
    errors: () => lines.filter((line) => line.level >= 50),
    clear: () => void lines.splice(0),
  };
};

export type RawAnswer = { status: number; headers: http.IncomingHttpHeaders; text: string; body: unknown };

export type RawRequest = {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  agent?: http.Agent;
};

// One request with the path sent byte for byte as given (node:http only refuses control characters
// and spaces in it). Resolves with whatever the server answered, JSON-parsed when it parses.
export const rawRequest = (baseUrl: string, request: RawRequest, timeoutMs = 10_000): Promise<RawAnswer> => {
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: url.hostname,
        port: url.port,
        method: request.method,
        path: request.path,
        headers: request.headers,
        agent: request.agent ?? false,
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("error", reject);
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {
            // not JSON: keep the text
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body });
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer to ${request.method} ${request.path} within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(request.body);
  });
};

export type HeadOnlyAnswer = {
  // The status line and headers, as the server sent them before any byte of the body was sent.
  status: number;
  headers: Record<string, string>;
  interim: number[];
  // Resolves when the server closed the connection (it never will while it waits for the body).
  closed: Promise<void>;
  socket: net.Socket;
};

// Sends a request's head declaring `Content-Length: declaredLength` and then nothing: a server that
// reads bodies before deciding would wait forever, one that decides first answers at once. With
// `untilInterim`, an interim answer (100 Continue) is enough to resolve.
export const sendHeadOnly = async (
  baseUrl: string,
  request: { method: string; path: string; headers: Record<string, string>; declaredLength: number },
  options: { timeoutMs?: number; untilInterim?: boolean } = {},
): Promise<HeadOnlyAnswer> => {
  const timeoutMs = options.timeoutMs ?? 5_000;
  const url = new URL(baseUrl);
  const socket = net.connect(Number(url.port), url.hostname);
  await once(socket, "connect");
  const closed = once(socket, "close").then(() => undefined);
  const head = [
    `${request.method} ${request.path} HTTP/1.1`,
    `host: ${url.host}`,
    `content-length: ${request.declaredLength}`,
    ...Object.entries(request.headers).map(([name, value]) => `${name}: ${value}`),
    "",
    "",
  ].join("\r\n");
  socket.write(head);
  let received = "";
  const interim: number[] = [];
  try {
    const final = await new Promise<{ status: number; headers: Record<string, string> }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no final answer within ${timeoutMs} ms; received: ${JSON.stringify(received)}`)), timeoutMs);
      const onData = (chunk: Buffer) => {
        received += chunk.toString("latin1");
        // Interim answers (100 Continue) come first, each ending in an empty line.
        for (;;) {
          const end = received.indexOf("\r\n\r\n");
          if (end === -1) return;
          const [statusLine, ...headerLines] = received.slice(0, end).split("\r\n");
          const status = Number(statusLine!.split(" ")[1]);
          if (status >= 100 && status < 200 && !options.untilInterim) {
            interim.push(status);
            received = received.slice(end + 4);
            continue;
          }
          clearTimeout(timer);
          socket.off("data", onData);
          const headers = Object.fromEntries(
            headerLines.map((line) => {
              const colon = line.indexOf(":");
              return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()];
            }),
          );
          resolve({ status, headers });
          return;
        }
      };
      socket.on("data", onData);
      socket.on("error", reject);
      socket.on("close", () => reject(new Error(`closed before a final answer; received: ${JSON.stringify(received)}`)));
    });
    socket.on("error", () => undefined);
    socket.resume();
    return { ...final, interim, closed, socket };
  } catch (error) {
    socket.destroy();
    throw error;
  }
};
