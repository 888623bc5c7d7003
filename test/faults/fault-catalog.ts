import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { jobCatalog } from "../../apps/domain/queues/job-catalog.ts";
import { forgedInboxOutcomes, startForgingCallbacks } from "./forged-callbacks.ts";
import { faultNames } from "./fault-names.ts";
import type { FaultDefinition } from "./fault-run.ts";
import { simulatorRunMs, type FaultStack } from "./fault-stack.ts";
import type { RemoteAnswer } from "./remote-images.server.ts";

// The fault matrix. Each entry says what it injects, when, what heals it, and which task failures
// it explains (any other failure counts as lost). Unless said otherwise every task must succeed:
// the faults are all survivable ones, and an outage of a few seconds must not cost a task.

const count = (tasks: Record<string, number>, ...statuses: string[]) => statuses.reduce((sum, s) => sum + (tasks[s] ?? 0), 0);


const workerSigkillSubmitting: FaultDefinition = {
  name: "worker_sigkill_submitting",
  description:
    "Creates hang after the provider made the task (their answer is lost) and callbacks are lost, so tasks sit in `submitting` with " +
    "only the provider knowing their task; the worker is SIGKILLed while >= 2 do. Heal: the hangs and callback loss stop, a new " +
    "worker starts (1 s later). Expected: the new worker adopts each provider task by external_task_id; all succeed, no second create.",
  stack: {
    simulatorEnv: { SIM_TIMEOUT_RATE: "0.3", SIM_CONNECTION_FAULT_POINT: "after_create", SIM_HANG_MS: "60000", SIM_CALLBACK_LOSS: "1" },
    workerEnv: { PROVIDER_TIMEOUT_MS: "30000" },
  },
  readyToInject: (tasks) => count(tasks, "submitting") >= 2 && count(tasks, "queued") >= 1,
  inject: async ({ stack }) => {
    await stack.worker.kill("SIGKILL");
    return async () => {
      await stack.sim.patch({ timeout_rate: 0, callback_loss: 0 });
      await stack.worker.start();
    };
  },
  holdMs: 1_000,
};

const workerSigkillArchiving: FaultDefinition = {
  name: "worker_sigkill_archiving",
  description:
    "Result images answer after 4 s, so tasks linger in `archiving`; the worker is SIGKILLed while >= 2 do. Heal: results answer at " +
    "once, a new worker starts (1 s later). Expected: the archive jobs run again; all succeed, images stored once.",
  prepare: async ({ stack }) => stack.images.answerResultsWith(() => "slow"),
  readyToInject: (tasks) => count(tasks, "archiving") >= 2 && count(tasks, "queued", "submitting", "submitted", "processing") >= 1,
  inject: async ({ stack }) => {
    await stack.worker.kill("SIGKILL");
    return async () => {
      stack.images.answerResultsWith(() => "good");
      await stack.worker.start();
    };
  },
  holdMs: 1_000,
};

const apiSigkill: FaultDefinition = {
  name: "api_sigkill",
  description:
    "The API is SIGKILLed while tasks run at the provider and its callbacks arrive (the simulator does not retry a callback). Heal: " +
    "the API starts again on the same port after 3 s. Expected: polling covers the callbacks lost meanwhile; all succeed.",
  inject: async ({ stack }) => {
    await stack.api.kill("SIGKILL");
    return () => stack.api.start();
  },
  holdMs: 3_000,
};

const redisStopped: FaultDefinition = {
  name: "redis_stopped",
  description:
    "Redis (configured to save on shutdown) is stopped with SIGTERM, so it saves and exits. Heal: started again after 6 s on the same " +
    "port, with its data. Expected: workers reconnect and carry on; all succeed.",
  stack: { persistentRedis: true },
  inject: async ({ stack }) => {
    await stack.redis.stop();
    return () => stack.redis.start();
  },
  holdMs: 6_000,
};

const redisRestartedEmpty: FaultDefinition = {
  name: "redis_restarted_empty",
  description:
    "Redis without persistence is SIGKILLed and a new, empty one started on the same port at once: every queued job, the slot " +
    "ledger, the provider gate and the sweeper's job scheduler are gone. Heal: none beyond the restart. Expected: Postgres is the " +
    "truth; the sweeper re-drives what Redis lost; all succeed.",
  inject: async ({ stack, note }) => {
    await stack.redis.restartEmpty();
    return async () => {
      // Evidence for the notes: the sweeper runs on a BullMQ job scheduler that lives in Redis.
      const back = await sweeperScheduledWithin(stack, 5_000);
      note(back ? `the sweeper's job scheduler was back in Redis ${back} ms after the restart` : "the sweeper's job scheduler was not back in Redis 5 s after the restart: nothing sweeps");
    };
  },
  holdMs: 0,
};

const sweeperScheduledWithin = async (stack: FaultStack, ms: number): Promise<number | undefined> => {
  const connection = new Redis(stack.redis.url, { maxRetriesPerRequest: 1 });
  const queue = new Queue(jobCatalog.reconcile.queue, { connection, prefix: stack.queuePrefix });
  const started = Date.now();
  try {
    for (;;) {
      if (await queue.getJobScheduler("reconcile-sweep")) return Date.now() - started;
      if (Date.now() - started > ms) return undefined;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  } finally {
    await queue.close();
    connection.disconnect();
  }
};

const redisHung: FaultDefinition = {
  name: "redis_hung",
  description: "Redis is frozen (SIGSTOP): connections stay open, nothing answers. Heal: SIGCONT after 6 s. Expected: all succeed.",
  inject: async ({ stack }) => {
    stack.redis.freeze();
    return async () => stack.redis.thaw();
  },
  holdMs: 6_000,
};

const postgresRefused: FaultDefinition = {
  name: "postgres_refused",
  description:
    "Postgres, as our processes reach it (through a proxy), refuses connections and resets the open ones. Heal: reachable again " +
    "after 6 s. Expected: all succeed.",
  inject: async ({ stack }) => {
    await stack.postgresProxy.setMode("refuse");
    return () => stack.postgresProxy.setMode("pass");
  },
  holdMs: 6_000,
};

const postgresHung: FaultDefinition = {
  name: "postgres_hung",
  description:
    "Postgres, as our processes reach it, goes silent: connections are accepted, nothing is answered, open ones stall mid-query. " +
    "Heal: after 6 s what was held is delivered. Expected: all succeed.",
  inject: async ({ stack }) => {
    await stack.postgresProxy.setMode("hang");
    return () => stack.postgresProxy.setMode("pass");
  },
  holdMs: 6_000,
};

const providerRoute404: FaultDefinition = {
  name: "provider_route_404",
  description:
    "Every provider call answers 404 {code: null} (CometAPI, March 2026). Heal: the route answers again after 6 s. Expected: the " +
    "circuit opens, tasks wait without spending their budget, one probe closes it; all succeed.",
  inject: async ({ stack }) => {
    await stack.sim.patch({ route_unavailable: true });
    return async () => void (await stack.sim.patch({ route_unavailable: false }));
  },
  holdMs: 6_000,
};

const provider5xx: FaultDefinition = {
  name: "provider_5xx",
  description:
    "Every create answers 500/5000 and half of all calls a transient error (1302, 1303, 5000-5002). Heal: after 6 s. Expected: " +
    "backoff and the circuit; a 6 s outage exhausts no task's retry budget; all succeed.",
  inject: async ({ stack }) => {
    await stack.sim.patch({ create_error_code: 5000, error_rate: 0.5 });
    return async () => void (await stack.sim.patch({ create_error_code: null, error_rate: 0 }));
  },
  holdMs: 6_000,
};

const providerSlow: FaultDefinition = {
  name: "provider_slow",
  description:
    "The provider runs new tasks for 4-8 s, delays callbacks by 1.5 s, and 30% of calls answer after 10 s, past our 5 s timeout " +
    "(a create's task exists all the same). Heal: after 8 s, back to 1-2 s runs and prompt answers. Expected: all succeed, each " +
    "created once.",
  inject: async ({ stack }) => {
    await stack.sim.patch({ run_ms: "4000-8000", callback_delay_ms: 1500, timeout_rate: 0.3, connection_fault_point: "after_create", hang_ms: 10_000 });
    return async () => void (await stack.sim.patch({ run_ms: simulatorRunMs, callback_delay_ms: 0, timeout_rate: 0 }));
  },
  holdMs: 8_000,
};

const callbacksLost: FaultDefinition = {
  name: "callbacks_lost",
  description: "Every callback is dropped for 8 s. Heal: callbacks are sent again. Expected: polling finds every end; all succeed.",
  inject: async ({ stack }) => {
    await stack.sim.patch({ callback_loss: 1 });
    return async () => void (await stack.sim.patch({ callback_loss: 0 }));
  },
  holdMs: 8_000,
};

const callbacksDuplicated: FaultDefinition = {
  name: "callbacks_duplicated",
  description:
    "Every callback is sent twice and half the tasks have `processing` arrive after their end, for 8 s. Heal: normal callbacks. " +
    "Expected: duplicates and stale reports change nothing; all succeed, archived once.",
  inject: async ({ stack }) => {
    await stack.sim.patch({ callback_duplicate: 1, callback_reorder: 0.5 });
    return async () => void (await stack.sim.patch({ callback_duplicate: 0, callback_reorder: 0 }));
  },
  holdMs: 8_000,
};

const callbacksForged: FaultDefinition = {
  name: "callbacks_forged",
  description:
    "Callbacks are signed (Standard Webhooks) and the API requires it. For 6 s, forged callbacks claiming success (images on another " +
    "host) or failure hit running tasks: wrong token (unsigned and validly signed), right token with no, bad, other-secret or " +
    "stale signature, and unknown task ids. Heal: the forging stops. Expected: every forgery refused (4xx, inbox `rejected` or " +
    "`unknown_task`), no task changed by one; all succeed. A task a forgery got through to counts as lost.",
  stack: { signedCallbacks: true },
  inject: async (ctx) => {
    const forging = startForgingCallbacks(ctx.stack, ctx.tasks.map((t) => t.id));
    return async () => {
      const log = await forging.stop();
      for (const [taskId, why] of log.accepted) ctx.taint(taskId, why);
      ctx.note(`forged callbacks sent: ${log.sent}, answered: ${JSON.stringify(log.byAnswer)}`);
      const inbox = await forgedInboxOutcomes(ctx.stack);
      ctx.note(`forged callbacks in the inbox by outcome: ${JSON.stringify(inbox)}`);
      const through = Object.entries(inbox).filter(([outcome]) => outcome !== "rejected" && outcome !== "unknown_task");
      if (through.length > 0) ctx.note(`forged callbacks got past the checks: ${JSON.stringify(Object.fromEntries(through))}`);
    };
  },
  holdMs: 6_000,
};

// Source images answered badly fail at our own check; result images answered badly fail archiving.
// A body shorter than its Content-Length, or one that trickles, is a transient network error to a
// client, so those may also end as retries exhausted.
const badSources: { answer: RemoteAnswer; mayFailWith: string[] }[] = [
  { answer: "redirect_to_bad_url", mayFailWith: ["invalid_image"] },
  { answer: "garbage", mayFailWith: ["invalid_image"] },
  { answer: "truncated_png", mayFailWith: ["invalid_image"] },
  { answer: "lying_length", mayFailWith: ["invalid_image", "retries_exhausted"] },
  { answer: "trickle", mayFailWith: ["invalid_image", "retries_exhausted"] },
];
const badResults: RemoteAnswer[] = ["redirect_to_bad_url", "garbage", "truncated_png", "lying_length", "trickle"];

const malformedRemoteAnswers: FaultDefinition = {
  name: "malformed_remote_answers",
  description:
    "Every task has a URL image. Half answer well; of the others, in turn, the source image or the provider's result images " +
    "(through the simulator's public URL) answer a redirect to `http://[::1`, garbage bytes, a truncated PNG, a Content-Length " +
    "twice the body then a closed connection, or a 1-byte-per-500-ms trickle. Present from the start; `heal` is the end of " +
    "intake. Expected: bad sources fail `invalid_image` (lying length and trickle may end `retries_exhausted`), bad results fail " +
    "`archive_failed`, good ones succeed. Its deadline is at least 120 s: the archive job's own backoff (6 tries, 2 s doubling) " +
    "takes about 80 s.",
  task: (i, images) => {
    if (i % 2 === 0) return { body: { image: images.sourceUrl("good") }, label: "good" };
    const variant = Math.floor(i / 2) % (badSources.length + badResults.length);
    const source = badSources[variant];
    if (source) return { body: { image: images.sourceUrl(source.answer) }, label: `source:${source.answer}`, mayFailWith: source.mayFailWith, mustFail: true };
    const result = badResults[variant - badSources.length]!;
    return { body: { image: images.sourceUrl("good") }, label: `result:${result}`, mayFailWith: ["archive_failed"], mustFail: true };
  },
  prepare: async ({ stack, tasks }) => {
    // The host sees the provider's task id; the simulator says whose task that is.
    stack.images.answerResultsWith(async (providerTaskId) => {
      const simTask = (await stack.sim.tasks()).find((t) => t.task_id === providerTaskId);
      const label = tasks.find((t) => t.id === simTask?.external_task_id)?.label ?? "";
      return label.startsWith("result:") ? (label.slice("result:".length) as RemoteAnswer) : "good";
    });
  },
  readyToInject: () => true,
  inject: async () => async () => undefined,
  holdMs: 0,
  minDeadlineS: 120,
};

export const faultCatalog: FaultDefinition[] = [
  workerSigkillSubmitting,
  workerSigkillArchiving,
  apiSigkill,
  redisStopped,
  redisRestartedEmpty,
  redisHung,
  postgresRefused,
  postgresHung,
  providerRoute404,
  provider5xx,
  providerSlow,
  callbacksLost,
  callbacksDuplicated,
  callbacksForged,
  malformedRemoteAnswers,
];
// The names `npm run faults` checks FAULTS_ONLY against, before loading this file, are these.
if (faultCatalog.map((f) => f.name).join() !== faultNames.join()) {
  throw new Error(`fault-names.ts and the catalog disagree: ${faultCatalog.map((f) => f.name).join(", ")}`);
}
