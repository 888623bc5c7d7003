// Loaded into each process of `npm run bench:callbacks` (`--import` after tsx) when
// CALLBACK_TRACE_DIR is set: timestamps of what one callback goes through in this process, its
// event-loop delay and its GC pauses, with no change to the apps' code. What it hooks:
// - HTTP in (diagnostics channel http.server.request.start) and the answer's end; the request's
//   last path segment but one names the task (/webhooks/kling/<task>/<token>, the bare path's
//   /in/<task>/x);
// - each pg query (start, end, its first words, the uuids among its values and result rows: a
//   query is a callback's when it names the task) and each wait for a pooled connection;
// - each NOTIFY heard (pg Client's 'notification' event);
// - HTTP out (http.client.request.start, and the answer's end), the task from the URL.
// Times are epoch milliseconds with microseconds (performance.timeOrigin + now()), comparable
// across the processes of one machine. On SIGUSR2 it writes what it has to
// <dir>/<role>-<pid>-<n>.json and starts afresh (the bench asks at each window's start and end).
import dc from "node:diagnostics_channel";
import { renameSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector";
import type { ClientRequest, IncomingMessage, ServerResponse } from "node:http";
import path from "node:path";
import { monitorEventLoopDelay, PerformanceObserver, performance } from "node:perf_hooks";
import pg from "pg";

const dir = process.env.CALLBACK_TRACE_DIR;
const role = process.env.CALLBACK_TRACE_ROLE ?? "process";

export type TraceEvent = {
  ev: "in" | "in_end" | "q" | "pool" | "notify" | "out" | "out_end";
  t: number;
  end?: number;
  task?: string;
  sql?: string;
  ids?: string[];
};
export type TraceDump = {
  role: string;
  pid: number;
  events: TraceEvent[];
  // Event-loop delay over the window, ms (monitorEventLoopDelay, 10 ms resolution of sampling).
  loopDelay: { p50: number; p99: number; max: number; mean: number };
  gc: { t: number; ms: number; kind: number }[];
  cpuMs: number;
};

const now = () => performance.timeOrigin + performance.now();
const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const taskOfPath = (url: string) => /\/([0-9a-f-]{36})\/[^/]+(?:\/[^/]+)?$/i.exec(url.split("?")[0] ?? "")?.[1];
const taskOfOutPath = (url: string) => /\/t\/([0-9a-f-]{36})$/i.exec(url.split("?")[0] ?? "")?.[1] ?? /\/b\/([0-9a-f-]{36})$/i.exec(url)?.[1];

if (dir) {
  let events: TraceEvent[] = [];
  let gcPauses: TraceDump["gc"] = [];
  let dumps = 0;
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  let cpuAtReset = process.cpuUsage();

  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      gcPauses.push({ t: performance.timeOrigin + entry.startTime, ms: entry.duration, kind: ((entry as { detail?: { kind?: number } }).detail)?.kind ?? 0 });
    }
  }).observe({ entryTypes: ["gc"] });

  dc.subscribe("http.server.request.start", (message) => {
    const { request, response } = message as { request: IncomingMessage; response: ServerResponse };
    const task = taskOfPath(request.url ?? "");
    if (!task) return;
    events.push({ ev: "in", t: now(), task });
    response.once("finish", () => events.push({ ev: "in_end", t: now(), task }));
  });
  dc.subscribe("http.client.request.start", (message) => {
    const { request } = message as { request: ClientRequest };
    const task = taskOfOutPath(request.path);
    if (!task) return;
    events.push({ ev: "out", t: now(), task });
    request.once("response", (response: IncomingMessage) => response.once("end", () => events.push({ ev: "out_end", t: now(), task })));
  });

  const idsIn = (values: unknown): string[] => {
    const found: string[] = [];
    const visit = (value: unknown, depth: number) => {
      if (found.length >= 8 || depth > 2) return;
      if (typeof value === "string" && uuidPattern.test(value)) found.push(value);
      else if (Array.isArray(value)) for (const item of value) visit(item, depth + 1);
    };
    visit(values, 0);
    return found;
  };
  // Both forms: a promise (Kysely) or a callback as the last argument (pg-pool's query).
  type QueryArgs = unknown[];
  const originalQuery = pg.Client.prototype.query as (...args: QueryArgs) => unknown;
  (pg.Client.prototype as { query: unknown }).query = function tracedQuery(this: pg.Client, ...args: QueryArgs) {
    const first = args[0] as string | { text?: string; values?: unknown[] } | undefined;
    const text = typeof first === "string" ? first : first?.text;
    if (typeof text !== "string") return originalQuery.apply(this, args);
    const event: TraceEvent = {
      ev: "q",
      t: now(),
      sql: text.replace(/\s+/g, " ").trim().slice(0, 60),
      ids: idsIn(typeof first === "string" ? args[1] : first?.values),
    };
    const done = (answer: unknown) => {
      event.end = now();
      const rows = (answer as { rows?: { id?: unknown; taskId?: unknown; task_id?: unknown }[] } | undefined)?.rows;
      if (Array.isArray(rows) && rows.length <= 100) {
        for (const row of rows) for (const value of [row.id, row.taskId, row.task_id]) if (typeof value === "string" && uuidPattern.test(value)) event.ids!.push(value);
      }
      events.push(event);
    };
    const last = args[args.length - 1];
    if (typeof last === "function") {
      args[args.length - 1] = (error: unknown, answer: unknown) => {
        done(error ? undefined : answer);
        return (last as (e: unknown, a: unknown) => unknown)(error, answer);
      };
      return originalQuery.apply(this, args);
    }
    const result = originalQuery.apply(this, args);
    if (result instanceof Promise) result.then(done, () => done(undefined));
    return result;
  };
  const originalConnect = pg.Pool.prototype.connect as (...args: unknown[]) => unknown;
  (pg.Pool.prototype as { connect: unknown }).connect = function tracedConnect(this: pg.Pool, ...args: unknown[]) {
    const event: TraceEvent = { ev: "pool", t: now() };
    const result = originalConnect.apply(this, args);
    if (result instanceof Promise) {
      void result.then(
        () => events.push({ ...event, end: now() }),
        () => undefined,
      );
    }
    return result;
  };
  const originalEmit = pg.Client.prototype.emit;
  pg.Client.prototype.emit = function tracedEmit(this: pg.Client, name: string | symbol, ...args: unknown[]) {
    if (name === "notification") {
      const id = String((args[0] as { payload?: string } | undefined)?.payload ?? "").split("_")[0];
      events.push({ ev: "notify", t: now(), ids: id ? [id] : [] });
    }
    return originalEmit.call(this, name, ...args);
  } as typeof originalEmit;

  // CALLBACK_TRACE_PROFILE=1: a V8 CPU profile per window too (<role>-<pid>-<n>.cpuprofile), the
  // window's work only, not the start-up's.
  const profiler = process.env.CALLBACK_TRACE_PROFILE === "1" ? new Session() : undefined;
  profiler?.connect();
  let profiling = false;
  const nextProfile = (file: string) => {
    if (!profiler) return;
    const start = () =>
      profiler.post("Profiler.enable", () => profiler.post("Profiler.setSamplingInterval", { interval: 500 }, () => profiler.post("Profiler.start", () => (profiling = true))));
    if (!profiling) return start();
    profiler.post("Profiler.stop", (error, result) => {
      if (!error) writeFileSync(`${file}.cpuprofile`, JSON.stringify(result.profile));
      start();
    });
  };

  process.on("SIGUSR2", () => {
    const cpu = process.cpuUsage(cpuAtReset);
    const dump: TraceDump = {
      role,
      pid: process.pid,
      events,
      loopDelay: {
        p50: loop.percentile(50) / 1e6,
        p99: loop.percentile(99) / 1e6,
        max: loop.max / 1e6,
        mean: loop.mean / 1e6,
      },
      gc: gcPauses,
      cpuMs: (cpu.user + cpu.system) / 1000,
    };
    const file = path.join(dir, `${role}-${process.pid}-${dumps++}.json`);
    nextProfile(file.replace(/\.json$/, ""));
    // Written whole, then renamed: the bench reads only complete files.
    writeFileSync(`${file}.part`, JSON.stringify(dump));
    renameSync(`${file}.part`, file);
    events = [];
    gcPauses = [];
    loop.reset();
    cpuAtReset = process.cpuUsage();
  });
}
