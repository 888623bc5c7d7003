// The API under test as its own process, on a throw-away database, queue prefix and storage directory
// (all removed by `stop`), so the load generator in the bench process never shares its event loop.
import { randomBytes } from "node:crypto";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import pg from "pg";
import { prepareDatabase } from "../../apps/domain/db/prepare-database.ts";
import { builtEntry, ensureBuilt } from "../../ops/build/build-apps.mjs";
import { freePort } from "../support/free-port.ts";
import { benchImageUrl } from "./api-fill.ts";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));

export type BenchStack = {
  apiUrl: string;
  apiPid: number;
  databaseUrl: string;
  redisUrl: string;
  queuePrefix: string;
  // A second prefix for the raw baseline's BullMQ jobs, so its queue never sits in the API's.
  baselinePrefix: string;
  // The API's SERVER_KEY: a worker of the same run must have it (signing secrets are sealed under it).
  serverKey: string;
  // Warn/error lines the API printed (LOG_LEVEL=warn): a figure with errors behind it is suspect.
  apiLogLines: () => string[];
  // CPU seconds the API process has used so far (user + system), from /proc.
  apiCpuSeconds: () => Promise<number>;
  // A second API process on the same database, queues and storage, with `env` on top (another
  // setting weighed against the default in the same run); stopped by `stop` at the latest.
  startVariant: (env: Record<string, string>) => Promise<ApiProcess>;
  stop: () => Promise<void>;
};

export type ApiProcess = { url: string; pid: number; logLines: () => string[]; cpuSeconds: () => Promise<number>; stop: () => Promise<void> };

const postgresServerFromEnv = (env: NodeJS.ProcessEnv) => {
  if (!env.DATABASE_URL) return env.TEST_POSTGRES_URL ?? "postgresql://postgres@127.0.0.1:5432";
  const url = new URL(env.DATABASE_URL);
  url.pathname = "";
  return url.toString().replace(/\/$/, "");
};

const withAdmin = async <T>(server: string, fn: (client: pg.Client) => Promise<T>): Promise<T> => {
  const client = new pg.Client({ connectionString: `${server}/postgres` });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
};

// SCAN + DEL on our own prefixes only: the Redis is shared with other people's runs.
export const deletePrefixKeys = async (redis: Redis, prefix: string) => {
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
    cursor = next;
    if (keys.length) await redis.del(...keys);
  } while (cursor !== "0");
};

// Linux reports process CPU in clock ticks; USER_HZ is 100 on every architecture Node runs on here.
// User and system (kernel, for the process: its socket writes and file calls) CPU seconds.
export const readCpuTimes = async (pid: number) => {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { user: Number(fields[11]) / 100, system: Number(fields[12]) / 100 };
};
export const readCpuSeconds = async (pid: number) => {
  const { user, system } = await readCpuTimes(pid);
  return user + system;
};

// The API logs at warn here (a log line per request would be measured too), so its start line does
// not show: it listens on a port chosen here, and is ready once /healthz answers.
const waitForHealthy = async (child: ChildProcess, url: string, output: () => string, timeoutMs: number) => {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the API exited (${child.exitCode}) before listening:\n${output()}`);
    try {
      if ((await fetch(`${url}/healthz`)).ok) return url;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`the API did not start within ${timeoutMs} ms:\n${output()}`);
};

// `whole`: `npm start`'s entry (apps/local-stack/main.ts: the API, a worker and the simulator as its
// children, the simulator on a port of its own, `stackEnv` on top) instead of the API alone;
// `apiPid` and `apiCpuSeconds` are then the supervisor's, not the API's.
// `nodeArgs`: more node flags for the API process (bench:callbacks's trace preload, with tsx to load it).
export type BenchStackOptions = { whole?: boolean; stackEnv?: Record<string, string>; nodeArgs?: string[] };

export const startBenchStack = async (env: NodeJS.ProcessEnv = process.env, options: BenchStackOptions = {}): Promise<BenchStack> => {
  const whole = options.whole === true;
  const server = postgresServerFromEnv(env);
  const redisUrl = env.REDIS_URL ?? env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
  const runId = `${process.pid}_${Date.now().toString(36)}`;
  const databaseName = `kling_benchapi_${runId}`;
  const databaseUrl = `${server}/${databaseName}`;
  const queuePrefix = `benchapi${runId.replace(/_/g, "")}`;
  const baselinePrefix = `${queuePrefix}raw`;
  const storageDir = await mkdtemp(path.join(tmpdir(), "kling-bench-api-"));

  const cleanups: (() => Promise<void>)[] = [];
  cleanups.push(() => rm(storageDir, { recursive: true, force: true }));
  cleanups.push(() =>
    withAdmin(server, async (client) => {
      await client.query(`drop database if exists "${databaseName}" with (force)`);
    }),
  );
  cleanups.push(async () => {
    const redis = new Redis(redisUrl, { maxRetriesPerRequest: 2 });
    try {
      await deletePrefixKeys(redis, queuePrefix);
      await deletePrefixKeys(redis, baselinePrefix);
    } finally {
      redis.disconnect();
    }
  });
  const stop = async () => {
    while (cleanups.length) await cleanups.pop()!().catch((error: Error) => console.error(`cleanup: ${error.message}`));
  };

  // One key for every API process of the run, so that each one's links and secrets agree.
  const serverKey = randomBytes(32).toString("base64url");
  try {
    await prepareDatabase(databaseUrl);
    // The API (or the whole stack) as deployed: from the build (ops/build).
    await ensureBuilt();
    // BENCH_API_CPU_PROFILE=<dir>: the API writes a V8 CPU profile there when it stops (where its
    // time goes, to choose what to make faster).
    const profile = env.BENCH_API_CPU_PROFILE ? ["--cpu-prof", `--cpu-prof-dir=${env.BENCH_API_CPU_PROFILE}`] : [];
    const simulatorPort = whole ? await freePort() : undefined;
    const spawnApi = async (extraEnv: Record<string, string>): Promise<ApiProcess> => {
      const apiPort = await freePort();
      const child = spawn(process.execPath, [...profile, ...(options.nodeArgs ?? []), "--enable-source-maps", builtEntry(whole ? "apps/local-stack/main.ts" : "apps/api/main.ts")], {
        cwd: repoRoot,
        env: {
          ...env,
          NODE_ENV: "production",
          DATABASE_URL: databaseUrl,
          REDIS_URL: redisUrl,
          QUEUE_PREFIX: queuePrefix,
          STORAGE_DIR: storageDir,
          LOG_LEVEL: "warn",
          PORT: String(apiPort),
          SERVER_KEY: serverKey,
          BOOTSTRAP_API_KEY: "",
          PUBLIC_BASE_URL: "",
          PROVIDER_WEBHOOK_SECRET: "",
          // Intake refuses literal private image URLs; the bench's image host (api-fill.ts) is never
          // fetched (no worker runs), only named, so its one port is allowed, besides what the
          // caller allows (bench:callbacks: its consumer on loopback, which the API calls back).
          ALLOWED_PRIVATE_HOSTS: [env.ALLOWED_PRIVATE_HOSTS, new URL(benchImageUrl).host].filter(Boolean).join(","),
          ...(simulatorPort === undefined ? {} : { SIMULATOR_PORT: String(simulatorPort), ...options.stackEnv }),
          ...extraEnv,
        },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let output = "";
      const logLines: string[] = [];
      const collect = (chunk: Buffer) => {
        const text = chunk.toString("utf8");
        // Keep the head (the start-up line, the first errors) and count the rest.
        if (output.length < 64_000) output += text;
        for (const line of text.split("\n")) if (line.trim() && !/api listening on/.test(line)) logLines.push(line);
      };
      child.stdout.on("data", collect);
      child.stderr.on("data", collect);
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      const stopChild = async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
        await exited;
        clearTimeout(timer);
      };
      cleanups.push(stopChild);
      // A ceiling only: on a machine shared with others' work (load average 20 on 2 cores) an API
      // that loads Prisma Client took over 60 s to listen.
      const url = await waitForHealthy(child, `http://127.0.0.1:${apiPort}`, () => output, 180_000);
      return { url, pid: child.pid!, logLines: () => logLines, cpuSeconds: () => readCpuSeconds(child.pid!), stop: stopChild };
    };
    const api = await spawnApi({});
    return {
      apiUrl: api.url,
      apiPid: api.pid,
      databaseUrl,
      redisUrl,
      queuePrefix,
      baselinePrefix,
      serverKey,
      apiLogLines: api.logLines,
      apiCpuSeconds: api.cpuSeconds,
      startVariant: (extraEnv) => {
        if (whole) throw new Error("startVariant: the API alone only");
        // A second API process on the first one's prefix, as in a deployment of several.
        return spawnApi({ QUEUE_PREFIX_SHARED: "true", ...extraEnv });
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
};
