// Pure helpers of `npm run bench:callbacks`: one callback's path cut into stages from the trace
// dumps of its processes (callback-trace.preload.ts), and the figures printed for them.
import type { TraceDump, TraceEvent } from "./callback-trace.preload.ts";
import { mean, quantile } from "./bench-figures.ts";

// What the bench itself saw of one callback: when it was due, when it was sent, when it arrived.
export type BenchSide = { task: string; scheduled: number; sent: number; arrived: number | undefined };

export const stageNames = [
  "bench: due -> sent",
  "sent -> API request start",
  "API request -> first query",
  "API task read (query)",
  "API read -> move start",
  "API move statement (incl. commit)",
  "move end -> NOTIFY heard (worker)",
  "NOTIFY -> claim start",
  "claim statement (incl. commit)",
  "claim end -> POST start",
  // Sent by the receiver (WEBHOOK_SEND_FROM_RECEIVER): its read of the leased delivery, no claim.
  "move end -> POST start (API sends)",
  "POST start -> consumer received",
] as const;
export type StageName = (typeof stageNames)[number];

const firstOf = (events: TraceEvent[], test: (e: TraceEvent) => boolean) => events.find(test);

// Per callback, each stage's duration (ms); a stage whose ends were not both seen is left out.
export const callbackStages = (
  bench: BenchSide[],
  api: TraceDump[],
  worker: TraceDump[],
  deliveryOfTask: Map<string, string>,
): { task: string; total: number; stages: Partial<Record<StageName, number>> }[] => {
  // A query is a callback's when it names the task (the read by id, the move).
  const tasks = new Set(bench.map((b) => b.task));
  const apiEvents = new Map<string, TraceEvent[]>();
  for (const e of api.flatMap((d) => d.events)) {
    const owners = e.task ? [e.task] : (e.ids ?? []).filter((id) => tasks.has(id));
    for (const task of new Set(owners)) {
      const list = apiEvents.get(task) ?? [];
      list.push(e);
      apiEvents.set(task, list);
    }
  }
  const workerEvents = worker.flatMap((d) => d.events);
  const notifyOf = new Map<string, TraceEvent>();
  const claimOf = new Map<string, TraceEvent>();
  const outOf = new Map<string, TraceEvent>();
  for (const e of workerEvents) {
    if (e.ev === "notify" && e.ids?.[0] && !notifyOf.has(e.ids[0])) notifyOf.set(e.ids[0], e);
    if (e.ev === "q" && e.sql?.startsWith("update webhook_delivery d set attempts")) {
      // A claim names every id it was asked for; it took those among its rows (ids after them).
      for (const id of new Set(e.ids ?? [])) if (!claimOf.has(id) || claimOf.get(id)!.t > e.t) claimOf.set(id, e);
    }
    if (e.ev === "out" && e.task && !outOf.has(e.task)) outOf.set(e.task, e);
  }
  return bench
    .filter((b) => b.arrived !== undefined)
    .map((b) => {
      const stages: Partial<Record<StageName, number>> = {};
      const put = (name: StageName, from: number | undefined, to: number | undefined) => {
        if (from !== undefined && to !== undefined) stages[name] = to - from;
      };
      const mine = (apiEvents.get(b.task) ?? []).sort((x, y) => x.t - y.t);
      const received = firstOf(mine, (e) => e.ev === "in");
      const queries = mine.filter((e) => e.ev === "q" && e.end !== undefined);
      const read = queries[0];
      // The move names its task in its answer; so does the receiver's read of the delivery the move
      // leased to it, which comes after.
      const move = queries.find((e) => e !== read && e.sql?.startsWith('with "before"')) ?? (queries.length > 1 ? queries[queries.length - 1] : undefined);
      const delivery = deliveryOfTask.get(b.task);
      const notify = delivery ? notifyOf.get(delivery) : undefined;
      const claim = delivery ? claimOf.get(delivery) : undefined;
      const apiOut = firstOf(mine, (e) => e.ev === "out");
      const out = apiOut ?? outOf.get(b.task);
      put("bench: due -> sent", b.scheduled, b.sent);
      put("sent -> API request start", b.sent, received?.t);
      put("API request -> first query", received?.t, read?.t);
      put("API task read (query)", read?.t, read?.end);
      put("API read -> move start", read?.end, move?.t);
      put("API move statement (incl. commit)", move?.t, move?.end);
      put("move end -> NOTIFY heard (worker)", move?.end, notify?.t);
      put("NOTIFY -> claim start", notify?.t, claim?.t);
      put("claim statement (incl. commit)", claim?.t, claim?.end);
      if (apiOut) put("move end -> POST start (API sends)", move?.end, apiOut.t);
      else put("claim end -> POST start", claim?.end, out?.t);
      put("POST start -> consumer received", out?.t, b.arrived);
      return { task: b.task, total: b.arrived! - b.scheduled, stages };
    });
};

const f1 = (x: number) => x.toFixed(1);

// p50 / p99 of each stage, and each stage's mean over the slowest 5% of callbacks end to end (where
// the tail's time goes: the stages' p99s do not add up to the total's).
export const stageTable = (rows: ReturnType<typeof callbackStages>, names: readonly string[] = stageNames): string[] => {
  const slowCut = quantile(
    rows.map((r) => r.total),
    0.95,
  );
  const slow = rows.filter((r) => r.total >= slowCut);
  const lines = [`  stage                                  n     p50     p99   mean(slowest 5%, n=${slow.length}, total >= ${f1(slowCut)} ms)`];
  for (const name of names) {
    const xs = rows.map((r) => (r.stages as Record<string, number | undefined>)[name]).filter((x): x is number => x !== undefined);
    const slowXs = slow.map((r) => (r.stages as Record<string, number | undefined>)[name]).filter((x): x is number => x !== undefined);
    lines.push(`  ${name.padEnd(38)} ${String(xs.length).padStart(4)} ${f1(quantile(xs, 0.5)).padStart(7)} ${f1(quantile(xs, 0.99)).padStart(7)} ${f1(mean(slowXs)).padStart(7)}`);
  }
  const totals = rows.map((r) => r.total);
  lines.push(`  ${"total (due -> consumer)".padEnd(38)} ${String(totals.length).padStart(4)} ${f1(quantile(totals, 0.5)).padStart(7)} ${f1(quantile(totals, 0.99)).padStart(7)} ${f1(mean(slow.map((r) => r.total))).padStart(7)}`);
  return lines;
};

// A process's window: event-loop delay, GC pauses, CPU per callback.
// `idleCpuMsPerS`: the same process's CPU while no callback was sent (timers, pollers), taken off
// before dividing by the callbacks.
export const processLine = (dump: TraceDump, callbacks: number, windowMs: number, idleCpuMsPerS = 0) => {
  const gcMs = dump.gc.map((g) => g.ms);
  const kinds = new Map<number, number>();
  for (const g of dump.gc) kinds.set(g.kind, (kinds.get(g.kind) ?? 0) + 1);
  const net = dump.cpuMs - (idleCpuMsPerS * windowMs) / 1000;
  return (
    `  ${dump.role.padEnd(8)} loop delay p50=${f1(dump.loopDelay.p50)} p99=${f1(dump.loopDelay.p99)} max=${f1(dump.loopDelay.max)} ms; ` +
    `gc ${gcMs.length} pauses (by kind ${[...kinds].map(([k, n]) => `${k}:${n}`).join(" ")}), sum ${f1(gcMs.reduce((a, b) => a + b, 0))} ms, max ${f1(gcMs.length ? Math.max(...gcMs) : 0)} ms; ` +
    `cpu ${f1(dump.cpuMs)} ms in ${f1(windowMs / 1000)} s, idle ${f1(idleCpuMsPerS)} ms/s, ${f1(net / Math.max(1, callbacks))} ms per callback beyond idle`
  );
};

// GC pauses of a process that overlap the slowest callbacks' flight, summed: is the tail GC?
export const gcInSlowest = (rows: { task: string; total: number }[], bench: BenchSide[], dumps: TraceDump[]) => {
  const cut = quantile(
    rows.map((r) => r.total),
    0.95,
  );
  const byTask = new Map(bench.map((b) => [b.task, b]));
  const pauses = dumps.flatMap((d) => d.gc);
  let overlapped = 0;
  let slowCount = 0;
  for (const row of rows) {
    if (row.total < cut) continue;
    slowCount++;
    const b = byTask.get(row.task)!;
    for (const p of pauses) if (p.t < b.arrived! && p.t + p.ms > b.scheduled) overlapped += p.ms;
  }
  return slowCount ? overlapped / slowCount : 0;
};
