import path from "node:path";
import { ratios } from "../support/fault-kit.ts";
import { call } from "../support/http.ts";
import { census, countFault, waitUntilTerminal, type FaultCount, type PlannedTask } from "./fault-accounting.ts";
import type { FaultName } from "./fault-names.ts";
import type { RemoteImageHost } from "./remote-images.server.ts";
import { startFaultStack, type FaultStack, type FaultStackOptions } from "./fault-stack.ts";
import type { Crash } from "./supervised-service.ts";

export type FaultContext = {
  stack: FaultStack;
  tasks: PlannedTask[];
  // Marks a task as changed by something that must not change it (a forged callback).
  taint(taskId: string, why: string): void;
  note(line: string): void;
};

// Heals the fault; resolves once it is healed.
export type Heal = () => Promise<void>;

export type TaskShape = {
  // Added to the default body (an inline 400x400 image, 0.2 on every side, n = 1).
  body?: Record<string, unknown>;
  label?: string;
  mayFailWith?: readonly string[];
  mustFail?: boolean;
};

export type FaultDefinition = {
  name: FaultName;
  // What is injected and when, what heals it, and which failures it explains.
  description: string;
  stack?: Partial<Pick<FaultStackOptions, "capacity" | "persistentRedis" | "signedCallbacks" | "simulatorEnv" | "env" | "workerEnv">>;
  task?: (i: number, images: RemoteImageHost) => TaskShape;
  // After the stack is up, before any task is submitted.
  prepare?: (ctx: FaultContext) => Promise<void>;
  // When to inject, given the tasks per status; by default once they are in several states.
  readyToInject?: (tasks: Record<string, number>) => boolean;
  inject: (ctx: FaultContext) => Promise<Heal>;
  // How long the fault lasts before it is healed.
  holdMs: number;
  // The fault's own retry schedules need longer than the run's deadline (e.g. archive backoff).
  minDeadlineS?: number;
};

export type FaultRunOptions = {
  templateDatabaseUrl: string;
  tasks: number;
  deadlineS: number;
  logDir: string;
  sourceImage: Buffer;
  // Progress lines (stderr for the CLI).
  progress?: (line: string) => void;
  // More checks on the ended batch while its stack still runs (a test's own assertions).
  inspect?: (stack: FaultStack, tasks: PlannedTask[]) => Promise<void>;
};

export type FaultResult = FaultCount & { crashes: string[]; logDir: string };

const count = (tasks: Record<string, number>, ...statuses: string[]) => statuses.reduce((sum, s) => sum + (tasks[s] ?? 0), 0);

// Some tasks waiting, some at the provider, some past it.
export const inSeveralStates = (tasks: Record<string, number>) =>
  count(tasks, "queued") >= 1 && count(tasks, "submitting", "submitted", "processing") >= 2 && count(tasks, "archiving", "succeeded", "failed") >= 1;

const READY_WAIT_MS = 20_000;
export const NOT_AT_INJECTION_POINT = "the tasks never reached the injection point";
const INTAKE_TRIES = 10;

// A 503 says "nothing was stored, retry": a client does, after Retry-After. The stack is busy
// starting (and the machine may be shared), so this can happen before any fault.
const submitAsAClientWould = async (stack: FaultStack, body: Record<string, unknown>) => {
  for (let retries = 0; ; retries++) {
    const answer = await call(stack.api.url, "POST", "/v1/tasks", { key: stack.api.key, body });
    if (answer.status === 202) return { answer, retries };
    if (answer.status !== 503 || retries + 1 >= INTAKE_TRIES) {
      throw new Error(`intake answered ${answer.status} before any fault (try ${retries + 1}): ${JSON.stringify(answer.body)}`);
    }
    const retryAfterS = Number(answer.headers.get("retry-after") ?? "1");
    await new Promise((resolve) => setTimeout(resolve, (Number.isFinite(retryAfterS) ? retryAfterS : 1) * 1000));
  }
};

// One fault, start to end: a stack of its own, a batch of tasks, the fault injected while the tasks
// are in several states and healed after its hold, then a bounded wait for every task to end, and
// the count.
export const runFault = async (fault: FaultDefinition, options: FaultRunOptions): Promise<FaultResult> => {
  const progress = options.progress ?? (() => undefined);
  const logDir = path.join(options.logDir, fault.name);
  const startedAt = Date.now();
  const stack = await startFaultStack({
    name: fault.name,
    templateDatabaseUrl: options.templateDatabaseUrl,
    logDir,
    sourceImage: options.sourceImage,
    capacity: 4,
    ...fault.stack,
  });
  progress(`${fault.name}: ${fault.description}`);
  progress(`${fault.name}: stack up in ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
  const notes: string[] = [];
  const tainted = new Map<string, string>();
  try {
    const tasks: PlannedTask[] = [];
    const ctx: FaultContext = { stack, tasks, taint: (id, why) => tainted.set(id, why), note: (line) => notes.push(line) };
    await fault.prepare?.(ctx);

    const image = options.sourceImage.toString("base64");
    const shapes = Array.from({ length: options.tasks }, (_, i) => fault.task?.(i, stack.images) ?? {});
    let refusals = 0;
    const submitted = await Promise.all(
      shapes.map(async (shape, i) => {
        const body = { image, ...ratios, n: i % 5 === 4 ? 2 : 1, ...shape.body };
        const { answer, retries } = await submitAsAClientWould(stack, body);
        refusals += retries;
        return { id: answer.body.id as string, n: body.n, label: shape.label ?? "plain", mayFailWith: shape.mayFailWith ?? [], mustFail: shape.mustFail };
      }),
    );
    if (refusals > 0) notes.push(`intake answered 503 ${refusals} times before any fault (retried as its Retry-After says)`);
    tasks.push(...submitted);
    const ids = tasks.map((t) => t.id);

    const ready = fault.readyToInject ?? inSeveralStates;
    const readyBy = Date.now() + READY_WAIT_MS;
    let seen = await census(stack.db);
    while (!ready(seen) && Date.now() < readyBy) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      seen = await census(stack.db);
    }
    if (!ready(seen)) notes.push(`${NOT_AT_INJECTION_POINT} within ${READY_WAIT_MS} ms; injected anyway`);
    progress(`${fault.name}: injecting with tasks ${JSON.stringify(seen)}`);

    const heal = await fault.inject(ctx);
    await new Promise((resolve) => setTimeout(resolve, fault.holdMs));
    await heal();
    const healedAt = Date.now();
    progress(`${fault.name}: healed with tasks ${JSON.stringify(await census(stack.db))}`);

    const deadlineAt = healedAt + Math.max(options.deadlineS, fault.minDeadlineS ?? 0) * 1000;
    const allEnded = await waitUntilTerminal(stack.db, ids, deadlineAt);
    const counted = await countFault(stack, tasks, { healedAt, deadlineAt, allEnded }, tainted);
    await options.inspect?.(stack, tasks);
    const crashes = [stack.api, stack.worker].flatMap((service) => service.crashes.map(describeCrash));
    return { ...counted, notes: [...notes, ...counted.notes], crashes, logDir };
  } finally {
    await stack.stop();
  }
};

// The error a crashed process printed last, and where it was thrown.
const describeCrash = (crash: Crash) => {
  const lines = crash.output.split("\n");
  const at = lines.findLastIndex((line) => /^\w*Error\b/.test(line));
  const error = at >= 0 ? `${lines[at]!.trim()} ${lines[at + 1]?.trim() ?? ""} ${lines[at + 2]?.trim() ?? ""}` : lines.slice(-3).join(" | ");
  return `${crash.kind} exited unasked (code ${crash.exit.code}, signal ${crash.exit.signal}): ${error}`;
};
