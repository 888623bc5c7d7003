import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { inject } from "vitest";
import { parseApiConfig } from "../../apps/api/api.config.ts";
import { startApi, type RunningApi } from "../../apps/api/api.server.ts";
import { createAccountWithKey } from "../../apps/domain/account/api-key.ts";
import { serverKeyFrom } from "../../apps/domain/crypto/server-key.ts";
import { createDb, type Db } from "../../apps/domain/db/database.ts";
import type { LogDestination } from "../../apps/domain/logging/logger.ts";
import { cloneDatabase, dropCloneLater } from "./databases.ts";
import { parseSimulatorConfig } from "../../apps/simulator/simulator.config.ts";
import { startSimulator, type RunningSimulator } from "../../apps/simulator/simulator.server.ts";
import { parseWorkerConfig } from "../../apps/worker/worker.config.ts";
import { startWorker, type RunningWorker } from "../../apps/worker/worker.server.ts";

// Every stack of the test run shares one installation secret; tests derive its keys to forge links.
export const testServerKey = "test-server-key-0123456789-abcdefghijklmnop";
export const testLinkKey = serverKeyFrom(testServerKey).derive("image-links");

export type StackOptions = {
  simulatorEnv?: Record<string, string>;
  apiEnv?: Record<string, string>;
  workerEnv?: Record<string, string>;
  withWorker?: boolean;
  // Receives the API's log lines (give apiEnv a LOG_LEVEL too): for tests that check what was logged.
  apiLogDestination?: LogDestination;
};

export type Stack = {
  db: Db;
  api: RunningApi;
  simulator: RunningSimulator;
  // Starts one more worker process (in this process) on the same queues, with env overrides.
  startWorker(env?: Record<string, string>): Promise<RunningWorker>;
  // Starts one more API (in this process: its own server, pools and auth cache) on the same
  // database and queues, with env overrides on top of the stack's apiEnv; stopped with the stack.
  startApi(env?: Record<string, string>): Promise<RunningApi>;
  // The env startWorker would use, with overrides: for a worker run as a child process.
  workerEnv(env?: Record<string, string>): Record<string, string>;
  env: { databaseUrl: string; redisUrl: string; queuePrefix: string; storageDir: string };
  newAccount(): Promise<{ accountId: string; key: string }>;
  // Leaves the database copy's drop running unless asked to wait (databases.ts dropCloneLater).
  stop(options?: { waitForDatabaseDrop?: boolean }): Promise<void>;
};

// The whole system in this process, on real Postgres, Redis and HTTP: simulator, API, worker. Each
// stack has its own queue prefix and storage directory, so test files never see each other's work.
export const startStack = async (options: StackOptions = {}): Promise<Stack> => {
  const redisUrl = inject("redisUrl");
  const queuePrefix = `t${randomUUID().slice(0, 8)}`;
  const databaseUrl = await cloneDatabase(inject("templateDatabaseUrl"), queuePrefix);
  const storageDir = await mkdtemp(path.join(tmpdir(), "kling-storage-"));
  const common = {
    DATABASE_URL: databaseUrl,
    REDIS_URL: redisUrl,
    QUEUE_PREFIX: queuePrefix,
    STORAGE_DIR: storageDir,
    LOG_LEVEL: "silent",
    SERVER_KEY: testServerKey,
    // A test stack is one stack by construction, whose API and workers (in-process and spawned) are
    // set up with different provider variables; the queue prefix check has tests of its own
    // (test/process/stack-identity.test.ts), which turn this off.
    QUEUE_PREFIX_SHARED: "true",
  };
  const timing = { CALLBACK_GRACE_MS: "5000", STALL_RECHECK_MS: "5000", POLL_MAX_INTERVAL_MS: "2000" };

  const simulator = await startSimulator(
    parseSimulatorConfig({ SIMULATOR_PORT: "0", SIM_RUN_MS: "150", SIM_TASK_CONTROL: "true", LOG_LEVEL: "silent", ...options.simulatorEnv }),
  );
  // Image URLs on this machine are the tests' own image hosts: the API accepts them at intake as
  // the worker downloads them (the same ALLOWED_PRIVATE_HOSTS, as in a real deployment).
  // ENQUEUE_TIMEOUT_MS: the production default (2 s) stands for "Redis is not answering", and is
  // tested as such (infrastructure-faults: a silent Redis gets its 503). Here the API shares one
  // event loop with the simulator, the workers and vitest on a machine that may be loaded, where an
  // enqueue to a healthy Redis took over 2 s (provider-faults-capacity's mixed-n intake answered
  // 503 beside a CPU hog): the wait measured this process, not Redis.
  const apiConfig = (env: Record<string, string> = {}) =>
    parseApiConfig({ ...common, ...timing, PORT: "0", ALLOWED_PRIVATE_HOSTS: "127.0.0.1", ENQUEUE_TIMEOUT_MS: "15000", ...options.apiEnv, ...env });
  const api = await startApi(apiConfig(), { logDestination: options.apiLogDestination });
  const extraApis: RunningApi[] = [];
  const launchApi = async (env: Record<string, string> = {}) => {
    const extra = await startApi(apiConfig(env));
    extraApis.push(extra);
    return extra;
  };
  const workers: RunningWorker[] = [];
  const workerEnv = (env: Record<string, string> = {}): Record<string, string> => ({
    ...common,
    ...timing,
    PUBLIC_BASE_URL: api.url,
    PROVIDER: "simulator",
    PROVIDER_BASE_URL: simulator.url,
    ALLOWED_PRIVATE_HOSTS: "127.0.0.1",
    RECONCILE_EVERY_MS: "200",
    SUBMIT_RETRY_BASE_MS: "50",
    SUBMIT_RETRY_MAX_MS: "500",
    PROVIDER_TIMEOUT_MS: "5000",
    ...options.workerEnv,
    ...env,
  });
  const launchWorker = async (env: Record<string, string> = {}) => {
    const worker = await startWorker(parseWorkerConfig(workerEnv(env)));
    workers.push(worker);
    return worker;
  };
  if (options.withWorker !== false) await launchWorker();
  const db = createDb(databaseUrl, { poolSize: 4 });
  return {
    db,
    api,
    simulator,
    startWorker: launchWorker,
    startApi: launchApi,
    workerEnv,
    env: { databaseUrl, redisUrl, queuePrefix, storageDir },
    newAccount: () => createAccountWithKey(db, `test-${randomUUID().slice(0, 8)}`),
    stop: async ({ waitForDatabaseDrop = false } = {}) => {
      await Promise.all(workers.map((w) => w.stop()));
      await Promise.all(extraApis.map((a) => a.stop()));
      await api.stop();
      await simulator.stop();
      await db.destroy();
      const dropped = dropCloneLater(databaseUrl);
      if (waitForDatabaseDrop) await dropped;
      await rm(storageDir, { recursive: true, force: true });
    },
  };
};
