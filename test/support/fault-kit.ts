import { call, waitForTask } from "./http.ts";
import { makeImage } from "./images.ts";
import { taskRows } from "./rows.ts";
import { startStack, type Stack } from "./stack.ts";

// Helpers for the provider fault tests: a stack whose API and worker agree on the provider's
// capacity, the simulator's admin routes, and submitting and settling batches of tasks.

// Source 400x400 with 0.2 on every side: every result must be 560x560.
export const ratios = { up_expansion_ratio: 0.2, down_expansion_ratio: 0.2, left_expansion_ratio: 0.2, right_expansion_ratio: 0.2 };
export const resultSize = { width: 560, height: 560 };

let sourceImage: Promise<string> | undefined;
export const testImage = (): Promise<string> => (sourceImage ??= makeImage(400, 400).then((b) => b.toString("base64")));

export type FaultStackOptions = {
  // PROVIDER_CAPACITY for both the API (which reports it) and the worker (which keeps to it).
  capacity: number;
  simulatorEnv?: Record<string, string>;
  // Given to both the API and the worker (lifecycle timing is read by both).
  env?: Record<string, string>;
  workerEnv?: Record<string, string>;
  withWorker?: boolean;
};

export const startFaultStack = (options: FaultStackOptions): Promise<Stack> => {
  const shared = { PROVIDER_CAPACITY: String(options.capacity), ...options.env };
  return startStack({
    simulatorEnv: { SIM_CAPACITY: String(options.capacity), ...options.simulatorEnv },
    apiEnv: shared,
    workerEnv: { ...shared, ...options.workerEnv },
    withWorker: options.withWorker,
  });
};

export type SimTaskView = {
  task_id: string;
  account: string;
  external_task_id: string | null;
  status: string;
  status_msg: string;
  n: number;
  create_count: number;
};

// The simulator's admin routes (apps/simulator/README.md), over HTTP like the tests' other calls.
// Only the addresses are needed, so a stack of real processes (test/faults) can use these too.
type Reachable = { api: { url: string } };

export const simAdmin = (stack: { simulator: { url: string } }) => {
  const url = stack.simulator.url;
  return {
    patch: async (patch: Record<string, unknown>) => {
      const answer = await call(url, "PATCH", "/_sim/config", { body: patch });
      if (answer.status !== 200) throw new Error(`simulator refused ${JSON.stringify(patch)}: ${JSON.stringify(answer.body)}`);
      return answer.body;
    },
    stats: async () => (await call(url, "GET", "/_sim/stats")).body,
    tasks: async (): Promise<SimTaskView[]> => (await call(url, "GET", "/_sim/tasks")).body,
    createCalls: async (): Promise<{ account: string; external_task_id: string; count: number }[]> =>
      (await call(url, "GET", "/_sim/create-calls")).body,
    forget: async (taskId: string) => call(url, "DELETE", `/_sim/tasks/${encodeURIComponent(taskId)}`),
    // Time control (SIM_TASK_CONTROL, on in every test stack): `id` is the provider's task_id or
    // our task id (the external_task_id). Each answers once the task's callbacks were handled.
    finish: async (id: string) => controlled(url, id, "finish"),
    fail: async (id: string, message?: string) => controlled(url, id, "fail", message === undefined ? {} : { message }),
    callback: async (id: string) => controlled(url, id, "callback"),
    // Every call hanging on a timeout fault loses its connection now; answers how many did.
    dropHanging: async (): Promise<number> => {
      const answer = await call(url, "POST", "/_sim/hanging/drop");
      if (answer.status !== 200) throw new Error(`simulator refused to drop hanging calls: ${answer.status} ${JSON.stringify(answer.body)}`);
      return answer.body.dropped;
    },
  };
};

const controlled = async (url: string, id: string, what: "finish" | "fail" | "callback", body?: unknown): Promise<SimTaskView> => {
  const answer = await call(url, "POST", `/_sim/tasks/${encodeURIComponent(id)}/${what}`, body === undefined ? {} : { body });
  if (answer.status !== 200) throw new Error(`simulator refused to ${what} ${id}: ${answer.status} ${JSON.stringify(answer.body)}`);
  return answer.body;
};

const atProvider = (t: SimTaskView) => t.status === "submitted" || t.status === "processing";

// Under the manual clock (SIM_CLOCK=manual): frees the provider's slots one at a time, ending the
// oldest of `tasks` running there each time the freed slot has been taken again (or none of
// `tasks` is left waiting for one), until all of them have ended at the provider. The order in
// which waiting tasks get slots is then the policy's alone, whatever the machine's load.
export const releaseOneAtATime = async (
  stack: Stack,
  tasks: { id: string }[],
  options: { capacity: number; timeoutMs?: number; simulators?: { url: string }[] },
) => {
  const ids = new Set(tasks.map((t) => t.id));
  const sims = (options.simulators ?? [stack.simulator]).map((simulator) => simAdmin({ simulator }));
  for (;;) {
    const running = await eventually(
      "the freed slot taken again",
      async () => {
        const views = (await Promise.all(sims.map(async (sim) => (await sim.tasks()).map((view) => ({ sim, view }))))).flat();
        const held = views.filter(({ view }) => atProvider(view) && ids.has(view.external_task_id ?? ""));
        if (held.length >= options.capacity) return held;
        const waiting = (await taskRows(stack.db, [...ids])).filter((r) => r.status === "queued" || r.status === "submitting");
        return waiting.length === 0 ? held : undefined;
      },
      options.timeoutMs ?? 30_000,
      20,
    );
    const oldest = running[0];
    if (!oldest) return;
    await oldest.sim.finish(oldest.view.task_id);
  }
};

export type Submitted = { id: string; key: string; n: number };

export const submitTask = async (stack: Stack, key: string, body: Record<string, unknown> = {}): Promise<Submitted> => {
  const created = await call(stack.api.url, "POST", "/v1/tasks", { key, body: { image: await testImage(), ...ratios, ...body } });
  if (created.status !== 202) throw new Error(`intake answered ${created.status}: ${JSON.stringify(created.body)}`);
  return { id: created.body.id, key, n: created.body.request.n };
};

// Submitted all at once, as a burst of callers would.
export const submitMany = (stack: Stack, key: string, count: number, body: (i: number) => Record<string, unknown> = () => ({})) =>
  Promise.all(Array.from({ length: count }, (_, i) => submitTask(stack, key, body(i))));

export const getTask = async (stack: Reachable, task: { id: string; key: string }) =>
  (await call(stack.api.url, "GET", `/v1/tasks/${task.id}`, { key: task.key })).body;

export const taskEvents = async (stack: Reachable, task: { id: string; key: string }) =>
  (await call(stack.api.url, "GET", `/v1/tasks/${task.id}/events`, { key: task.key })).body.data as {
    from: string | null;
    to: string;
    source: string;
    detail: Record<string, unknown> | null;
  }[];

export const readiness = async (stack: Reachable) => (await call(stack.api.url, "GET", "/readyz")).body;

// Every task to an end state; returns the tasks as the API shows them.
export const settle = (stack: Stack, tasks: { id: string; key: string }[], timeoutMs = 15_000) =>
  Promise.all(tasks.map((t) => waitForTask(stack.api.url, t.key, t.id, ["succeeded", "failed", "canceled"], timeoutMs)));

// Resolves with the first value `probe` returns that is not undefined; checks every `everyMs`.
export const eventually = async <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 10_000, everyMs = 50): Promise<T> => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not seen within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
};

// Samples a value in the background until stopped: for things that are only true for a moment
// (a lowered capacity, an open circuit) while the work runs.
export const sampleWhile = <T>(probe: () => Promise<T>, everyMs = 50) => {
  const seen: T[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      seen.push(await probe());
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
  })();
  return {
    seen,
    stop: async () => {
      running = false;
      await loop;
      return seen;
    },
  };
};
