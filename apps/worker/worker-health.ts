import { once } from "node:events";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { withTimeout } from "../domain/async/with-timeout.ts";
import type { Logger } from "../domain/logging/logger.ts";
import { localUrlFor } from "../domain/process/listen-url.ts";

// A worker has no API, so an orchestrator (Kubernetes, compose healthchecks, a load test) had no
// way to tell a worker that works from one stuck at start (Redis refusing, a processor that never
// started) or one draining after SIGTERM. With WORKER_HEALTH_PORT set, it answers:
// - /healthz: 200 while the process runs (liveness: restart it only when this stops answering);
// - /readyz: 200 only once every processor has started and, at the time of asking, Postgres answers
//   and every queue of the worker can be written in Redis; 503 with the reason otherwise: while
//   starting (naming the step it waits on), when a check fails, and from SIGTERM on (draining).

export type WorkerReadiness = {
  // Each check resolves when the part answers; its error message is the reason shown.
  postgres: () => Promise<unknown>;
  redis: () => Promise<unknown>;
  // The processors (BullMQ workers) that are not running, by queue; empty when all are.
  stoppedProcessors: () => string[];
};

type Phase = { kind: "starting"; step: string } | { kind: "running"; checks: WorkerReadiness } | { kind: "draining" };

export type WorkerHealth = {
  url: string;
  // What the start waits on now (said in /readyz while starting).
  starting(step: string): void;
  running(checks: WorkerReadiness): void;
  draining(): void;
  close(): Promise<void>;
};

const PROBE_TIMEOUT_MS = 2_000;

const probe = async (check: () => Promise<unknown>) => {
  const started = Date.now();
  try {
    await withTimeout(check(), PROBE_TIMEOUT_MS, "probe");
    return { ok: true as const, latency_ms: Date.now() - started };
  } catch (error) {
    return { ok: false as const, error: (error as Error).message };
  }
};

const send = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" }).end(JSON.stringify(body));
};

export const startWorkerHealth = async (options: { host: string; port: number; logger: Logger }): Promise<WorkerHealth> => {
  let phase: Phase = { kind: "starting", step: "starting" };

  const readiness = async () => {
    if (phase.kind === "starting") return { status: 503, body: { status: "starting", reason: `starting: ${phase.step}` } };
    if (phase.kind === "draining") return { status: 503, body: { status: "draining", reason: "stopping (SIGTERM): its jobs finish or go back to the queue; it takes no new ones" } };
    const { checks } = phase;
    const [postgres, redis] = await Promise.all([probe(checks.postgres), probe(checks.redis)]);
    const stopped = checks.stoppedProcessors();
    const processors = stopped.length === 0 ? { ok: true as const } : { ok: false as const, error: `not running: ${stopped.join(", ")}` };
    // Asked again after the probes: a SIGTERM during them wins.
    if (phase.kind !== "running") return readiness();
    const failing = Object.entries({ postgres, redis, processors }).filter(([, check]) => !check.ok);
    const ready = failing.length === 0;
    return {
      status: ready ? 200 : 503,
      body: {
        status: ready ? "ready" : "not_ready",
        ...(ready ? {} : { reason: failing.map(([name, check]) => `${name}: ${"error" in check ? check.error : "failed"}`).join("; ") }),
        checks: { postgres, redis, processors },
      },
    };
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path !== "/healthz" && path !== "/readyz") return send(res, 404, { error: { code: "not_found", message: "this worker answers /healthz and /readyz only" } });
    if (req.method !== "GET" && req.method !== "HEAD") return send(res, 405, { error: { code: "method_not_allowed", message: `${path} answers GET` } });
    if (path === "/healthz") return send(res, 200, { status: "ok" });
    const { status, body } = await readiness();
    send(res, status, body);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      options.logger.warn({ err: error }, "worker health check failed");
      if (!res.headersSent) send(res, 503, { status: "not_ready", reason: (error as Error).message });
    });
  });
  server.listen(options.port, options.host);
  await Promise.race([once(server, "listening"), once(server, "error").then(([error]) => Promise.reject(error as Error))]);
  const url = localUrlFor(options.host, (server.address() as AddressInfo).port);
  options.logger.info({ url }, `worker health on ${url}/healthz and ${url}/readyz`);

  return {
    url,
    starting: (step) => {
      if (phase.kind === "starting") phase = { kind: "starting", step };
    },
    running: (checks) => {
      if (phase.kind === "starting") phase = { kind: "running", checks };
    },
    draining: () => {
      phase = { kind: "draining" };
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
};
