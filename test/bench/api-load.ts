// Load drivers of the API benchmark: autocannon at a fixed concurrency (the peak), an open-loop
// generator at a fixed rate (latency below the peak), and a closed loop for the in-process baselines.
import http from "node:http";
import { performance } from "node:perf_hooks";
import autocannon from "autocannon";
import { quantile } from "./bench-figures.ts";

export type Figures = {
  // Successful (2xx) operations per second over the timed window; failures never count as speed.
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  ok: number;
  // Answers outside 2xx by status, plus connection errors and timeouts.
  non2xx: number;
  statuses: Record<string, number>;
  errors: number;
  seconds: number;
};

type NextRequest = (request: autocannon.Request) => autocannon.Request;

export type HammerOptions = {
  url: string;
  connections: number;
  seconds: number;
  warmupSeconds: number;
  method?: "GET" | "POST";
  headers?: Record<string, string>;
  body?: string;
  // Rewrites each request (a random path, the next callback); may call stopEarly() when its supply
  // of fresh work has run out, which ends the window then rather than replay used work.
  next?: (request: autocannon.Request, stopEarly: () => void) => autocannon.Request;
};

// One autocannon run of warm-up + window at a fixed concurrency; only answers that complete inside
// the window count. One run rather than two: a separate warm-up run would drop its connections with
// requests in flight, and the API would spend the start of the window on answers nobody reads.
export const hammer = (options: HammerOptions): Promise<Figures> =>
  new Promise<Figures>((resolve, reject) => {
    let instance: autocannon.Instance | undefined;
    let stopped = false;
    const stopEarly = () => {
      if (stopped) return;
      stopped = true;
      setImmediate(() => instance?.stop());
    };
    const next = options.next;
    const setupRequest: NextRequest | undefined = next ? (request) => next(request, stopEarly) : undefined;
    let windowStart = Infinity;
    const latencies: number[] = [];
    const statuses: Record<string, number> = {};
    let errors = 0;
    instance = autocannon(
      {
        url: options.url,
        connections: options.connections,
        duration: options.warmupSeconds + options.seconds,
        method: options.method ?? "GET",
        ...(options.headers ? { headers: options.headers } : {}),
        ...(options.body ? { body: options.body } : {}),
        timeout: 30,
        requests: [setupRequest ? { setupRequest } : {}],
      },
      (error: unknown, result: autocannon.Result) => {
        if (error) return reject(error);
        const seconds = (result.finish.getTime() - Math.min(windowStart, result.finish.getTime())) / 1000;
        const non2xx = Object.values(statuses).reduce((a, b) => a + b, 0) + errors;
        resolve({
          perSecond: seconds > 0 ? latencies.length / seconds : 0,
          p50Ms: quantile(latencies, 0.5),
          p99Ms: quantile(latencies, 0.99),
          ok: latencies.length,
          non2xx,
          statuses: { ...statuses, ...(errors ? { errors } : {}) },
          errors,
          seconds,
        });
      },
    );
    instance.on("start", () => {
      windowStart = Date.now() + options.warmupSeconds * 1000;
    });
    instance.on("response", (_client, statusCode, _bytes, responseTime) => {
      if (Date.now() < windowStart) return;
      if (statusCode >= 200 && statusCode < 300) latencies.push(responseTime);
      else statuses[String(statusCode)] = (statuses[String(statusCode)] ?? 0) + 1;
    });
    // Connection errors and timeouts.
    instance.on("reqError", () => {
      if (Date.now() >= windowStart) errors++;
    });
  });

export type PacedOptions = {
  url: string;
  ratePerSecond: number;
  seconds: number;
  maxInFlight: number;
  headers: Record<string, string>;
  nextPath: () => string;
};

// Requests leave on a fixed schedule whatever the answers do (open loop), at most maxInFlight at
// once; each latency runs from its scheduled start, so queueing behind a slow answer is counted
// (no coordinated omission). autocannon's rate limit cannot do this: it sends each connection's
// quota for the second in a burst at the top of the second, gives an unlimited rate to any
// connection whose share rounds to 0 (overallRate < connections), and corrects latencies with an
// expected interval of ceil(1/rate) = 1 ms.
export const paced = async (options: PacedOptions): Promise<Figures> => {
  const target = new URL(options.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.maxInFlight });
  const total = Math.max(1, Math.round(options.ratePerSecond * options.seconds));
  const intervalMs = 1000 / options.ratePerSecond;
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let errors = 0;
  const send = (scheduledAt: number, path: string) =>
    new Promise<void>((resolve) => {
      const request = http.request(
        { agent, host: target.hostname, port: target.port, path, method: "GET", headers: options.headers },
        (response) => {
          response.resume();
          response.on("end", () => {
            const status = response.statusCode ?? 0;
            if (status >= 200 && status < 300) latencies.push(performance.now() - scheduledAt);
            else statuses[String(status)] = (statuses[String(status)] ?? 0) + 1;
            resolve();
          });
        },
      );
      request.on("error", () => {
        errors++;
        resolve();
      });
      request.end();
    });

  const started = performance.now();
  const inFlight: Promise<void>[] = [];
  let sent = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor((performance.now() - started) / intervalMs) + 1);
      for (; sent < due; sent++) inFlight.push(send(started + sent * intervalMs, options.nextPath()));
      if (sent >= total) return resolve();
      setTimeout(tick, Math.max(0, started + sent * intervalMs - performance.now()));
    };
    tick();
  });
  await Promise.all(inFlight);
  const seconds = (performance.now() - started) / 1000;
  agent.destroy();
  const non2xx = Object.values(statuses).reduce((a, b) => a + b, 0) + errors;
  return {
    perSecond: latencies.length / seconds,
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
    ok: latencies.length,
    non2xx,
    statuses: { ...statuses, ...(errors ? { errors } : {}) },
    errors,
    seconds,
  };
};

// `concurrency` loops each running `op` back to back: the closed-loop twin of autocannon's
// connections, for work done in this process (the raw-pg baselines, the image decode). `op` answers
// false when its supply of fresh work is used up, which ends the window early. Any error breaks
// the run: a baseline that fails is measuring something else.
export const closedLoop = async (options: {
  concurrency: number;
  seconds: number;
  warmupSeconds: number;
  op: () => Promise<boolean>;
}): Promise<Figures> => {
  const window = async (seconds: number, latencies?: number[]) => {
    const deadline = performance.now() + seconds * 1000;
    let exhausted = false;
    const loop = async () => {
      while (!exhausted && performance.now() < deadline) {
        const start = performance.now();
        if (!(await options.op())) {
          exhausted = true;
          return;
        }
        latencies?.push(performance.now() - start);
      }
    };
    const started = performance.now();
    await Promise.all(Array.from({ length: options.concurrency }, loop));
    return (performance.now() - started) / 1000;
  };
  if (options.warmupSeconds > 0) await window(options.warmupSeconds);
  const latencies: number[] = [];
  const seconds = await window(options.seconds, latencies);
  return {
    perSecond: latencies.length / seconds,
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
    ok: latencies.length,
    non2xx: 0,
    statuses: {},
    errors: 0,
    seconds,
  };
};
