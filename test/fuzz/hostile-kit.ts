import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFile, writeFile } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
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
  // Send the head with Expect: 100-continue and the body only once the server says so, as curl does
  // for large bodies: a server that refuses first answers without the body ever being sent.
  expectContinue?: boolean;
  // Send the body in two pieces without a Content-Length (Transfer-Encoding: chunked).
  chunked?: boolean;
};

// One request with the path sent byte for byte as given (node:http only refuses control characters
// and spaces in it). Resolves with whatever the server answered, JSON-parsed when it parses.
export const rawRequest = (baseUrl: string, request: RawRequest, timeoutMs = 10_000): Promise<RawAnswer> => {
  const url = new URL(baseUrl);
  const body = request.body === undefined ? undefined : Buffer.from(request.body);
  const headers: Record<string, string> = { ...request.headers };
  if (body && !request.chunked) headers["content-length"] = String(body.length);
  if (body && request.expectContinue) headers.expect = "100-continue";
  return new Promise((resolve, reject) => {
    let settled = false;
    const req = http.request(
      { host: url.hostname, port: url.port, method: request.method, path: request.path, headers, agent: request.agent ?? false, timeout: timeoutMs },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("error", (error) => {
          if (!settled) reject(error);
        });
        res.on("end", () => {
          settled = true;
          const text = Buffer.concat(chunks).toString("utf8");
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // not JSON: keep the text
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body: parsed });
          // A body the server never asked for is never sent: drop the request (and its socket).
          if (!req.writableFinished) req.destroy();
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer to ${request.method} ${request.path} within ${timeoutMs} ms`)));
    req.on("error", (error) => {
      if (!settled) reject(error);
    });
    const sendBody = () => {
      if (!body || !request.chunked) return void req.end(body);
      req.write(body.subarray(0, body.length >> 1));
      req.end(body.subarray(body.length >> 1));
    };
    if (body && request.expectContinue) {
      req.on("continue", sendBody);
      req.flushHeaders();
    } else sendBody();
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
  // Not events.once: it would reject on the socket's 'error' (a reset is expected here).
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
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

export type ChildApi = {
  url: string;
  pid: number;
  output: () => string;
  // Resident memory of the API process, from /proc: now and the peak since the last reset.
  memory: () => Promise<{ rssBytes: number; peakRssBytes: number }>;
  resetPeak: () => Promise<void>;
  stop: () => Promise<void>;
};

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

// The real API entry point in a process of its own (node --import tsx: one process, so its pid
// is the one whose memory is measured), on the given env. Resolves once it is listening.
export const spawnApi = async (env: Record<string, string>): Promise<ChildApi> => {
  const child = spawn(process.execPath, ["--import", "tsx", "--import", "./test/fuzz/exit-with-parent.ts", "apps/api/main.ts"], {
    cwd: root,
    // info: the start line ("api listening on ...") is a log line.
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? root, PORT: "0", LOG_LEVEL: "info", LOG_FORMAT: "json", ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
  child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
  const exited = once(child, "exit");
  const url = await new Promise<string>((resolve, reject) => {
    const onData = () => {
      const match = /api listening on (http:\/\/\S+)/.exec(output);
      if (match) resolve(match[1]!);
    };
    child.stdout!.on("data", onData);
    void exited.then(([code]) => reject(new Error(`api exited (code ${code}) before listening:\n${output}`)));
  });
  const status = async () => {
    const text = await readFile(`/proc/${child.pid}/status`, "utf8");
    const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? NaN) * 1024;
    return { rssBytes: kb("VmRSS"), peakRssBytes: kb("VmHWM") };
  };
  return {
    url,
    pid: child.pid!,
    output: () => output,
    memory: status,
    // Writing 5 to clear_refs resets the peak (VmHWM) to the current resident size.
    resetPeak: () => writeFile(`/proc/${child.pid}/clear_refs`, "5"),
    stop: async () => {
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
};

// Sends a chunked body (no Content-Length) a piece at a time until the server answers or
// `maxBytes` went out (with `afterAnswer: "keep_sending"`, on past the answer until the server
// closes the connection); resolves with the answer's status line and headers, and `finish()`
// ends the body and resolves with everything the server sent.
export const sendChunkedUntilAnswered = async (
  baseUrl: string,
  request: { path: string; headers: Record<string, string>; chunkBytes: number; maxBytes: number; afterAnswer?: "stop" | "keep_sending" },
): Promise<{ status: number; headers: Record<string, string>; sentBytes: number; closed: Promise<void>; serverClosed: boolean; finish(): Promise<string> }> => {
  const url = new URL(baseUrl);
  const socket = net.connect(Number(url.port), url.hostname);
  await once(socket, "connect");
  socket.on("error", () => undefined);
  // Not events.once: it would reject on the socket's 'error' (a reset is expected here).
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  const head = [
    `POST ${request.path} HTTP/1.1`,
    `host: ${url.host}`,
    "transfer-encoding: chunked",
    ...Object.entries(request.headers).map(([name, value]) => `${name}: ${value}`),
    "",
    "",
  ].join("\r\n");
  let received = "";
  let answered: { status: number; headers: Record<string, string> } | undefined;
  socket.on("data", (chunk: Buffer) => {
    received += chunk.toString("latin1");
    const end = received.indexOf("\r\n\r\n");
    if (answered || end === -1) return;
    const [statusLine, ...lines] = received.slice(0, end).split("\r\n");
    answered = {
      status: Number(statusLine!.split(" ")[1]),
      headers: Object.fromEntries(lines.map((line) => [line.slice(0, line.indexOf(":")).trim().toLowerCase(), line.slice(line.indexOf(":") + 1).trim()])),
    };
  });
  socket.write(head);
  const piece = Buffer.alloc(request.chunkBytes, 0x20);
  let sentBytes = 0;
  let serverClosed = false;
  void closed.then(() => (serverClosed = true));
  const keepSending = request.afterAnswer === "keep_sending";
  while ((!answered || keepSending) && sentBytes < request.maxBytes && !socket.destroyed && !serverClosed) {
    // One write: `a && b && c` skipped the rest of a chunk once the buffer was full (a malformed body).
    const flushed = socket.write(Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from("\r\n")]));
    sentBytes += piece.length;
    // Let the server read (and answer) between pieces; wait for the kernel buffer when it is full.
    if (!flushed) {
      await new Promise<void>((resolve) => {
        const settle = () => {
          socket.off("drain", settle).off("close", settle).off("error", settle);
          resolve();
        };
        socket.on("drain", settle).on("close", settle).on("error", settle);
      });
    }
    else await new Promise((resolve) => setImmediate(resolve));
  }
  const deadline = Date.now() + 5_000;
  while (!answered && Date.now() < deadline && !socket.destroyed) await new Promise((resolve) => setTimeout(resolve, 10));
  if (!answered) {
    socket.destroy();
    throw new Error(`no answer after ${sentBytes} chunked bytes; received: ${JSON.stringify(received.slice(0, 500))}`);
  }
  const finish = async () => {
    socket.end("0\r\n\r\n");
    await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 10_000))]);
    return received;
  };
  return { ...answered, sentBytes, closed, serverClosed: serverClosed || socket.destroyed, finish };
};
