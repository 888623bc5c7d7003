import { randomBytes, randomUUID } from "node:crypto";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import pg from "pg";
import { parseSimulatorConfig } from "../../apps/simulator/simulator.config.ts";
import { startSimulator, type RunningSimulator } from "../../apps/simulator/simulator.server.ts";
import { openScratchWorkspace } from "../support/databases.ts";
import { simAdmin } from "../support/fault-kit.ts";
import { freePort } from "../support/free-port.ts";
import { startPrivateRedis, type PrivateRedis } from "../support/redis-server.ts";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.ts";
import { startRemoteImageHost, type RemoteImageHost } from "./remote-images.server.ts";
import { superviseService, type SupervisedService } from "./supervised-service.ts";

export type FaultStackOptions = {
  name: string;
  // A migrated database; each stack works on a copy of its own.
  templateDatabaseUrl: string;
  // Where the API's and the worker's output goes (one file each, kept after the run).
  logDir: string;
  sourceImage: Buffer;
  capacity: number;
  // Keep Redis data across a stop (an RDB written on shutdown).
  persistentRedis?: boolean;
  // Sign callbacks (simulator) and require signatures (API).
  signedCallbacks?: boolean;
  simulatorEnv?: Record<string, string>;
  // Given to both the API and the worker.
  env?: Record<string, string>;
  workerEnv?: Record<string, string>;
};

export type FaultStack = {
  name: string;
  // Straight to Postgres (not through the proxy): the harness counts while our processes cannot.
  db: pg.Pool;
  databaseUrl: string;
  queuePrefix: string;
  redis: PrivateRedis;
  postgresProxy: TcpProxy;
  images: RemoteImageHost;
  simulator: RunningSimulator;
  sim: ReturnType<typeof simAdmin>;
  api: SupervisedService & { url: string; key: string };
  worker: SupervisedService;
  webhookSecret: string | undefined;
  stop(): Promise<void>;
};

// The provider's usual run time here.
export const simulatorRunMs = "1000-2000";

// Deployment settings on a compressed time scale: the simulator runs a task in 1-2 s where the
// real provider takes tens of seconds, so the waits that are sized against it shrink alike.
export const compressedTiming = {
  CALLBACK_GRACE_MS: "5000",
  STALL_RECHECK_MS: "5000",
  POLL_MAX_INTERVAL_MS: "2000",
  CIRCUIT_OPEN_MS: "2000",
  PROVIDER_CAPACITY_RECOVER_MS: "2000",
};
const workerTiming = {
  RECONCILE_EVERY_MS: "500",
  SUBMIT_RETRY_BASE_MS: "200",
  SUBMIT_RETRY_MAX_MS: "2000",
  PROVIDER_TIMEOUT_MS: "5000",
  IMAGE_FETCH_TIMEOUT_MS: "3000",
  // A trickling image host ends its download here (production: 30 s), in step with the rest.
  IMAGE_FETCH_TOTAL_TIMEOUT_MS: "6000",
  // A killed worker's jobs are taken up again once their lock lapses.
  JOB_LOCK_MS: "3000",
};

// The whole system for one fault, each part where a fault can reach it: the API and the worker as
// real processes (kept running by a supervisor), Postgres behind a TCP proxy, a Redis of its own,
// the simulator in this process (its faults are switched over HTTP), and a host for remote images.
// Its own database copy, queue prefix and storage directory.
export const startFaultStack = async (options: FaultStackOptions): Promise<FaultStack> => {
  const queuePrefix = `f${randomUUID().slice(0, 8)}`;
  const cleanups: (() => Promise<unknown>)[] = [];
  const cleanup = async () => {
    for (const step of cleanups.reverse()) await step().catch(() => undefined);
  };
  try {
    const { databaseUrl, db, storageDir } = await openScratchWorkspace(options.templateDatabaseUrl, queuePrefix, "fault", cleanups);
    await mkdir(options.logDir, { recursive: true });

    const redis = await startPrivateRedis({ persistent: options.persistentRedis });
    cleanups.push(() => redis.kill());
    const target = new URL(databaseUrl);
    const postgresProxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    cleanups.push(() => postgresProxy.stop());

    let simulatorUrl = "";
    const images = await startRemoteImageHost({ sourceImage: options.sourceImage, simulatorUrl: () => simulatorUrl });
    cleanups.push(() => images.stop());
    const webhookSecret = options.signedCallbacks ? `whsec_${randomBytes(24).toString("base64")}` : undefined;
    const simulator = await startSimulator(
      parseSimulatorConfig({
        SIMULATOR_PORT: "0",
        SIM_CAPACITY: String(options.capacity),
        SIM_RUN_MS: simulatorRunMs,
        SIM_PUBLIC_URL: images.url,
        SIM_WEBHOOK_SECRET: webhookSecret,
        LOG_LEVEL: "silent",
        ...options.simulatorEnv,
      }),
    );
    simulatorUrl = simulator.url;
    cleanups.push(() => simulator.stop());

    // A fixed port: the provider holds callback URLs on it across an API restart.
    const apiPort = await freePort();
    const apiUrl = `http://127.0.0.1:${apiPort}`;
    const key = `fault-key-${randomBytes(12).toString("hex")}`;
    const shared = {
      DATABASE_URL: postgresProxy.via(databaseUrl),
      REDIS_URL: redis.url,
      QUEUE_PREFIX: queuePrefix,
      STORAGE_DIR: storageDir,
      // info: the log files are the evidence of what a fault did (sweeps, adoptions, retries).
      LOG_LEVEL: "info",
      PUBLIC_BASE_URL: apiUrl,
      PROVIDER_CAPACITY: String(options.capacity),
      ...compressedTiming,
      ...options.env,
    };
    const apiEnv = {
      ...shared,
      PORT: String(apiPort),
      BOOTSTRAP_API_KEY: key,
      SERVER_KEY: "fault-suite-server-key-0123456789-abcdefghijkl",
      // The faults' image host listens on loopback: intake refuses a literal private address unless
      // it is allowed, as the worker's downloads do.
      ALLOWED_PRIVATE_HOSTS: "127.0.0.1",
      ...(webhookSecret ? { PROVIDER_WEBHOOK_SECRET: webhookSecret } : {}),
    };
    const workerEnv = {
      ...shared,
      ...workerTiming,
      PROVIDER: "simulator",
      PROVIDER_BASE_URL: simulator.url,
      ALLOWED_PRIVATE_HOSTS: "127.0.0.1",
      ...options.workerEnv,
    };
    const api = superviseService("api", () => apiEnv, path.join(options.logDir, "api.log"));
    const worker = superviseService("worker", () => workerEnv, path.join(options.logDir, "worker.log"));
    cleanups.push(() => Promise.all([api.stop(), worker.stop()]));
    await Promise.all([api.start(), worker.start()]);

    return {
      name: options.name,
      db,
      databaseUrl,
      queuePrefix,
      redis,
      postgresProxy,
      images,
      simulator,
      sim: simAdmin({ simulator }),
      api: Object.assign(api, { url: apiUrl, key }),
      worker,
      webhookSecret,
      stop: cleanup,
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
};
