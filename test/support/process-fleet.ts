import { randomBytes, randomUUID } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { createServer, connect, type Server, type Socket } from "node:net";
import path from "node:path";
import pg from "pg";
import { parseSimulatorConfig } from "../../apps/simulator/simulator.config.ts";
import { startSimulator, type RunningSimulator } from "../../apps/simulator/simulator.server.ts";
import { spawnService, type ChildService, type Exit } from "./child-processes.ts";
import { openScratchWorkspace } from "./databases.ts";
import { freePort } from "./free-port.ts";

// Many machines on one: N API and M worker processes (real OS processes, started as deployed: their
// main.ts and env), a load balancer in front of the APIs (the provider's callbacks and the clients'
// requests reach whichever API is up), the simulator in this process, one database copy, one queue
// prefix and one storage directory shared by all. Where Postgres and Redis are is the caller's
// choice (`env`): a single Redis or a cluster, Postgres direct or through PgBouncer.

export type FleetOptions = {
  templateDatabaseUrl: string;
  apis: number;
  workers: number;
  // Given to every API and worker, after the fleet's own: REDIS_URL or REDIS_CLUSTER_NODES, and
  // the database URL(s) from `databaseEnv` when Postgres is reached some other way.
  env: Record<string, string>;
  // The fleet's database URL (direct) to the env that reaches it: DATABASE_URL through a pooler,
  // DATABASE_DIRECT_URL straight.
  databaseEnv?: (directUrl: string) => Record<string, string>;
  apiEnv?: Record<string, string>;
  workerEnv?: Record<string, string>;
  simulatorEnv?: Record<string, string>;
  // Where each process's output goes (one file per process start); kept after the run.
  logDir: string;
};

export type FleetMember = {
  kind: "api" | "worker";
  index: number;
  // The one running now (a restart replaces it).
  current(): ChildService;
  url?: string;
  // SIGKILL as a lost machine would: no shutdown sequence.
  kill(): Promise<Exit>;
  // Starts it (again), on the same port for an API; resolves once it is up.
  restart(): Promise<void>;
  stop(): Promise<void>;
};

export type Fleet = {
  databaseUrl: string;
  queuePrefix: string;
  // Straight to Postgres, for the harness's own reads.
  db: pg.Pool;
  simulator: RunningSimulator;
  // The load balancer's URL: what clients and the provider use.
  url: string;
  apis: FleetMember[];
  workers: FleetMember[];
  // The bootstrap account's key (every API ensures it).
  key: string;
  stop(): Promise<void>;
};

// Round robin over the APIs that accept a connection: one that refuses (killed, restarting) is
// skipped for the next, as a load balancer's health check would.
const startBalancer = async (targets: () => number[]): Promise<{ url: string; stop(): Promise<void> }> => {
  let turn = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    client.pause();
    const ports = targets();
    const attempt = (tries: number) => {
      if (tries >= ports.length * 2) return void client.destroy();
      const port = ports[turn++ % ports.length]!;
      const upstream = connect(port, "127.0.0.1");
      upstream.once("error", () => {
        upstream.destroy();
        setTimeout(() => attempt(tries + 1), 50);
      });
      upstream.once("connect", () => {
        sockets.add(upstream);
        upstream.on("close", () => sockets.delete(upstream));
        upstream.removeAllListeners("error");
        upstream.on("error", () => client.destroy());
        client.on("error", () => upstream.destroy());
        client.pipe(upstream).pipe(client);
        client.resume();
      });
    };
    attempt(0);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    stop: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
};

export const fleetServerKey = "fleet-server-key-0123456789-abcdefghijklmnop";

export const startFleet = async (options: FleetOptions): Promise<Fleet> => {
  const queuePrefix = `m${randomUUID().slice(0, 8)}`;
  const cleanups: (() => Promise<unknown>)[] = [];
  const cleanup = async () => {
    for (const step of cleanups.reverse()) await step().catch(() => undefined);
  };
  try {
    const { databaseUrl, db, storageDir } = await openScratchWorkspace(options.templateDatabaseUrl, queuePrefix, "fleet", cleanups);
    await mkdir(options.logDir, { recursive: true });

    const apiPorts = await Promise.all(Array.from({ length: options.apis }, () => freePort()));
    const balancer = await startBalancer(() => apiPorts);
    cleanups.push(() => balancer.stop());
    const simulator = await startSimulator(parseSimulatorConfig({ SIMULATOR_PORT: "0", LOG_LEVEL: "silent", ...options.simulatorEnv }));
    cleanups.push(() => simulator.stop());

    const key = `fleet-key-${randomBytes(12).toString("hex")}`;
    const shared = {
      DATABASE_URL: databaseUrl,
      ...options.databaseEnv?.(databaseUrl),
      QUEUE_PREFIX: queuePrefix,
      STORAGE_DIR: storageDir,
      SERVER_KEY: fleetServerKey,
      PUBLIC_BASE_URL: balancer.url,
      ALLOWED_PRIVATE_HOSTS: "127.0.0.1",
      LOG_LEVEL: "info",
      LOG_FORMAT: "json",
      ...options.env,
    };
    const member = (kind: "api" | "worker", index: number, env: Record<string, string>): FleetMember => {
      let starts = 0;
      let child: ChildService;
      const start = async () => {
        child = spawnService(kind, env, { logFile: path.join(options.logDir, `${kind}-${index}.${starts++}.log`) });
        // Its start line is logged at info: a LOG_LEVEL above that would leave this waiting.
        const started = child;
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          started.ready,
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`${kind} ${index} not up within 120 s:\n${started.output().slice(-4_000)}`)), 120_000);
          }),
        ]).finally(() => clearTimeout(timer));
      };
      return {
        kind,
        index,
        url: env.PORT ? `http://127.0.0.1:${env.PORT}` : undefined,
        current: () => child,
        kill: () => child.kill("SIGKILL"),
        restart: start,
        // SIGTERM, and SIGKILL if it has not ended its shutdown in 15 s.
        stop: async () => {
          if (!child?.alive()) return;
          const timer = setTimeout(() => void child.kill("SIGKILL"), 15_000);
          await child.kill("SIGTERM");
          clearTimeout(timer);
        },
      };
    };
    const apis = apiPorts.map((port, index) =>
      member("api", index, { ...shared, PORT: String(port), HOST: "127.0.0.1", BOOTSTRAP_API_KEY: key, ...options.apiEnv }),
    );
    const workers = Array.from({ length: options.workers }, (_, index) =>
      member("worker", index, { ...shared, PROVIDER: "simulator", PROVIDER_BASE_URL: simulator.url, ...options.workerEnv }),
    );
    cleanups.push(() => Promise.all([...apis, ...workers].map((m) => m.stop())));
    // The first API creates the bootstrap account; the rest then find it.
    await apis[0]!.restart();
    await Promise.all([...apis.slice(1), ...workers].map((m) => m.restart()));

    return { databaseUrl, queuePrefix, db, simulator, url: balancer.url, apis, workers, key, stop: cleanup };
  } catch (error) {
    await cleanup();
    throw error;
  }
};
