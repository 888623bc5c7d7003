import type { GateState } from "../provider-capacity/provider-gate.ts";
import type { RouteControls } from "../provider-capacity/provider-route-set.ts";
import { DEFAULT_ROUTE } from "../provider/provider-routes.schema.ts";
import type { Db, Task } from "../db/database.ts";
import { markWaiting } from "./task.store.ts";

// Which provider route a submission attempt goes to (see README "Routes and failover").

export const gateWaitReason = (state: GateState, route: string) =>
  `waiting: provider ${route === DEFAULT_ROUTE ? "" : `route ${route} `}${state.mode === "paused" ? "account paused" : "circuit open"} (${state.reason}); next try at ${new Date(state.until).toISOString()}`;

export const SLOT_WAIT_REASON = "waiting for a free provider slot (the provider account's parallel-task limit is reached)";

// With several routes the wait names them (and those passed over, with why).
const slotWaitReason = (full: RouteControls[], gated: string[]) =>
  full.length === 1 && full[0]!.route.name === DEFAULT_ROUTE
    ? SLOT_WAIT_REASON
    : `waiting for a free provider slot (full: ${full.map((r) => `route ${r.route.name}`).join(", ")}${gated.length > 0 ? `; ${gated.join("; ")}` : ""})`;

// Resolves when the signal is raised; disposed after each wait, so listeners do not pile up.
const untilAborted = (signal: AbortSignal) => {
  let dispose = () => undefined as void;
  const raised = new Promise<void>((resolve) => {
    const onAbort = () => resolve();
    signal.addEventListener("abort", onAbort, { once: true });
    dispose = () => signal.removeEventListener("abort", onAbort);
  });
  return { raised, dispose };
};

// What picking needs of submit-task.ts's deps (a type of its own: submit-task imports this module).
export type PickRouteDeps = {
  db: Db;
  // How long one job run waits in place for a free slot before it goes back to the queue.
  slotWaitMs: number;
  // Raised when this worker is stopping: a job waiting for a slot goes back to the queue at once.
  stopping?: AbortSignal;
};

type Picked =
  | { kind: "acquired"; route: RouteControls }
  | { kind: "gated"; reason: string; retryInMs: number }
  // Far back in line: come back after `delayMs` (the ledger says how long; it keeps the place).
  | { kind: "stepped_back"; delayMs: number }
  | { kind: "timed_out" };

// The preferred route with room: routes whose circuit is open or whose account is paused are passed
// over (one of their probes is let through when due); the first that has room takes the task.
// Waits in place, in line by priority on each open route and woken by releases, so that the next
// free slot goes to the task at the head of the line; after slotWaitMs the job leaves the lines and
// goes back to the queue. Only the first few in line wait in place (as many as a route has slots):
// the others step back to the queue, so they do not hold every worker while a task of higher
// priority (another account's single task) waits in BullMQ for a worker to take it.
// `onWaitInPlace`: called each time the task is about to wait in place (it is near the head of a
// line), with its place; the caller prepares its create meanwhile.
export const pickRoute = async (
  deps: PickRouteDeps,
  task: Task,
  candidates: RouteControls[],
  priority: number,
  onWaitInPlace?: (place: number) => void,
): Promise<Picked> => {
  const taskId = task.id;
  const deadline = Date.now() + deps.slotWaitMs;
  // A route found open to work stays so for this call (one gate read per route, as with one route).
  const admitted = new Set<RouteControls>();
  // A task a route has just refused (back in `queued`, naming it) does not carry that route's next
  // probe while there are other routes: another task will. Else a route whose probes keep failing
  // draws the same task back each time one is due, and under load (a retry slower than
  // CIRCUIT_OPEN_MS) that task never fails over.
  const refusedBy = candidates.length > 1 && task.status === "queued" ? candidates.find((r) => r.route.name === task.route) : undefined;
  for (let tries = 0; ; tries++) {
    const gated: { reason: string; retryInMs: number }[] = [];
    const inLine: { route: RouteControls; place: number; stepBackMs: number }[] = [];
    for (const route of candidates) {
      if (route === refusedBy && !admitted.has(route)) {
        const state = await route.gate.state();
        if (state.mode !== "closed") {
          gated.push({ reason: gateWaitReason(state, route.route.name), retryInMs: Math.max(250, state.until - Date.now()) });
          await route.slots.leaveLine(taskId);
          continue;
        }
      }
      const gate = admitted.has(route) ? ({ allowed: true, probe: false } as const) : await route.gate.check();
      if (gate.allowed) admitted.add(route);
      if (!gate.allowed) {
        gated.push({ reason: gateWaitReason(gate.state, route.route.name), retryInMs: gate.retryInMs });
        await route.slots.leaveLine(taskId);
        continue;
      }
      const acquired = await route.slots.acquire(taskId, task.n, priority);
      if (acquired.ok) {
        await Promise.all(candidates.filter((r) => r !== route).map((r) => r.slots.leaveLine(taskId)));
        return { kind: "acquired", route };
      }
      inLine.push({ route, place: acquired.place, stepBackMs: acquired.stepBackMs });
    }
    if (inLine.length === 0) {
      return { kind: "gated", reason: gated.map((g) => g.reason).join("; "), retryInMs: Math.min(...gated.map((g) => g.retryInMs)) };
    }
    // Said once, when the wait begins: a poller sees why its task has not moved.
    const waitReason = slotWaitReason(inLine.map((l) => l.route), gated.map((g) => g.reason));
    if (tries === 0 && task.waitReason !== waitReason) await markWaiting(deps.db, taskId, ["queued", "submitting"], waitReason);
    if (inLine.every((l) => l.stepBackMs > 0)) return { kind: "stepped_back", delayMs: Math.min(...inLine.map((l) => l.stepBackMs)) };
    const left = deadline - Date.now();
    // A stopping worker does not keep a waiting job: it goes back to the queue for another worker.
    if (left <= 0 || deps.stopping?.aborted) {
      await Promise.all(inLine.map((l) => l.route.slots.leaveLine(taskId)));
      return { kind: "timed_out" };
    }
    onWaitInPlace?.(Math.min(...inLine.filter((l) => l.stepBackMs === 0).map((l) => l.place)));
    const stop = deps.stopping ? untilAborted(deps.stopping) : undefined;
    // Woken when a release names this task; the timeout is the safety net (and keeps its place).
    // A route passed over because its circuit is open is looked at again as soon as its probe is
    // due, not at the next safety-net wake: its capacity would sit idle meanwhile.
    const timeoutMs = Math.max(10, Math.min(left, 1_000, ...gated.map((g) => g.retryInMs)));
    try {
      await Promise.race([...inLine.map((l) => l.route.slots.waitForRelease(taskId, timeoutMs)), ...(stop ? [stop.raised] : [])]);
    } finally {
      stop?.dispose();
    }
  }
};
