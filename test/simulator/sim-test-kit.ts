import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import sharp from "sharp";
import { parseSimulatorConfig } from "../../apps/simulator/simulator.config.ts";
import { startSimulator, type RunningSimulator } from "../../apps/simulator/simulator.server.ts";

// Helpers for the simulator's own tests: real HTTP everywhere, every test makes its own data.

export const startTestSimulator = (env: Record<string, string> = {}): Promise<RunningSimulator> =>
  startSimulator(parseSimulatorConfig({ LOG_LEVEL: "silent", SIMULATOR_PORT: "0", SIM_RUN_MS: "60", SIM_TASK_CONTROL: "true", ...env }));

export const randomToken = () => `acct-${randomUUID()}`;

// A gradient, so that mirrored and blurred areas are distinguishable from the original.
export const makeTestImage = async (width = 400, height = 300, format: "png" | "jpeg" = "png"): Promise<Buffer> => {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      const i = (y * width + x) * 3;
      raw[i] = Math.round((x * 255) / width);
      raw[i + 1] = Math.round((y * 255) / height);
      raw[i + 2] = (x * 7 + y * 13) % 256;
    }
  }
  const image = sharp(raw, { raw: { width, height, channels: 3 } });
  return format === "png" ? image.png().toBuffer() : image.jpeg().toBuffer();
};

export const validBody = (image: string, extra: Record<string, unknown> = {}) => ({
  image,
  up_expansion_ratio: 0.25,
  down_expansion_ratio: 0.25,
  left_expansion_ratio: 0.5,
  right_expansion_ratio: 0,
  n: 1,
  external_task_id: `ext-${randomUUID()}`,
  ...extra,
});

export type Family = "" | "/kling";

export const providerApi = (sim: RunningSimulator, token: string | undefined, family: Family = "") => {
  const base = `${sim.url}${family}/v1/images/editing/expand`;
  const headers = (): Record<string, string> => ({
    "content-type": "application/json",
    ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
  });
  const call = async (url: string, init: RequestInit = {}) => {
    const response = await fetch(url, { ...init, headers: { ...headers(), ...(init.headers as Record<string, string>) } });
    const text = await response.text();
    return { status: response.status, body: JSON.parse(text) as any };
  };
  return {
    create: (body: unknown) => call(base, { method: "POST", body: JSON.stringify(body) }),
    get: (id: string) => call(`${base}/${encodeURIComponent(id)}`),
    list: (query = "") => call(`${base}${query}`),
    raw: call,
  };
};

export const adminApi = (sim: RunningSimulator) => {
  const call = async (path: string, init: RequestInit = {}) => {
    const response = await fetch(`${sim.url}/_sim${path}`, { ...init, headers: { "content-type": "application/json" } });
    return { status: response.status, body: (await response.json()) as any };
  };
  return {
    config: () => call("/config"),
    patch: (patch: unknown) => call("/config", { method: "PATCH", body: JSON.stringify(patch) }),
    stats: (account?: string) => call(`/stats${account ? `?account=${encodeURIComponent(account)}` : ""}`),
    tasks: (account?: string) => call(`/tasks${account ? `?account=${encodeURIComponent(account)}` : ""}`),
    reset: () => call("/reset", { method: "POST" }),
    // Task control (SIM_TASK_CONTROL): end a running task now, or send its callback again.
    finish: (id: string) => call(`/tasks/${encodeURIComponent(id)}/finish`, { method: "POST" }),
    fail: (id: string, body: unknown = {}) => call(`/tasks/${encodeURIComponent(id)}/fail`, { method: "POST", body: JSON.stringify(body) }),
    callback: (id: string) => call(`/tasks/${encodeURIComponent(id)}/callback`, { method: "POST" }),
    dropHanging: () => call("/hanging/drop", { method: "POST" }),
  };
};

const listen = async (server: Server) => {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
};

const close = (server: Server) =>
  new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });

export type ReceivedCallback = { headers: IncomingHttpHeaders; rawBody: string; body: any; at: number };

// A callback receiver that tests wait on: waitFor resolves as soon as the received list satisfies
// the predicate, so no test sleeps.
export const startCallbackReceiver = async (status = 200) => {
  const received: ReceivedCallback[] = [];
  const waiters = new Set<() => void>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const rawBody = Buffer.concat(chunks).toString("utf8");
      received.push({ headers: req.headers, rawBody, body: JSON.parse(rawBody), at: Date.now() });
      res.writeHead(status).end();
      for (const wake of waiters) wake();
    });
  });
  const url = await listen(server);
  const waitFor = (predicate: (items: ReceivedCallback[]) => boolean, timeoutMs = 5000) =>
    new Promise<ReceivedCallback[]>((resolve, reject) => {
      const check = () => {
        if (!predicate(received)) return;
        cleanup();
        resolve(received);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`callbacks not received in ${timeoutMs} ms; got ${JSON.stringify(received.map((r) => r.body.task_status))}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });
  const forTask = (taskId: string) => received.filter((r) => r.body.task_id === taskId);
  return { url: `${url}/hook`, received, waitFor, forTask, stop: () => close(server) };
};

export const statusesOf = (items: ReceivedCallback[], taskId: string) =>
  items.filter((r) => r.body.task_id === taskId).map((r) => r.body.task_status as string);

export const isTerminalIn = (items: ReceivedCallback[], taskId: string) =>
  statusesOf(items, taskId).some((s) => s === "succeed" || s === "failed");
