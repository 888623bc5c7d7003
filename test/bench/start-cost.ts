// What starting the programs costs in CPU: `npm start` in a repository checkout, measured from /proc
// once the stack printed its ready block and the worker its start line. Each process's own CPU
// (user+sys, all threads) and the whole tree's (npm and everything under it, exited children
// such as `prisma migrate deploy` included through their parents' reaped-children times).
//
//   npx tsx test/bench/start-cost.ts [runs] [repo ...]
//
// Several repositories (checkouts of two commits) are measured in turn, run after run, so that
// both sides meet the same load. Each run starts on a fresh database name and its own ports (the
// first runs create and migrate it; `START_COST_REUSE_DB=1` keeps one database per repo, migrated
// by its first run, as a developer's second `npm start` finds it).
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import path from "node:path";
import { dropDatabases } from "../support/databases.ts";
import { baseEnv, descendants, freePort, spawnCaptured } from "../process/process-kit.ts";

const ticksPerSecond = 100;
const runs = Number(process.argv[2] ?? 3);
const repos = process.argv.slice(3).length > 0 ? process.argv.slice(3) : [process.cwd()];
const serverUrl = process.env.TEST_POSTGRES_URL ?? "postgresql://postgres@127.0.0.1:5432";
const redisUrl = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const reuseDb = process.env.START_COST_REUSE_DB === "1";
const runId = randomUUID().slice(0, 8);

// utime, stime, cutime, cstime (fields 14-17), in seconds.
const cpuOf = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number);
  return { own: (fields[11]! + fields[12]!) / ticksPerSecond, reaped: (fields[13]! + fields[14]!) / ticksPerSecond };
};

const measure = async (repo: string, label: string) => {
  const [port, simulatorPort] = [await freePort(), await freePort()];
  const storageDir = await mkdtemp(path.join(tmpdir(), "kling-startcost-"));
  const database = `${serverUrl}/kling_startcost_${runId}_${reuseDb ? label.replace(/\d+$/, "") : label}`;
  // npm in that checkout: the shell execs it, so the pid is npm's.
  const npm = spawnCaptured("sh", ["-c", `cd '${repo}' && exec npm start`], {
    env: {
      ...baseEnv(),
      PORT: String(port),
      SIMULATOR_PORT: String(simulatorPort),
      DATABASE_URL: database,
      REDIS_URL: redisUrl,
      QUEUE_PREFIX: `startcost${runId}${label}`,
      STORAGE_DIR: storageDir,
      LOG_FORMAT: "json",
    },
    detached: true,
  });
  const match = await npm.waitFor(/processes {2}stack (\d+), simulator (\d+), api (\d+), worker (\d+)/, 300_000);
  await npm.waitFor(/worker started/, 120_000);
  const [stack, simulator, api, worker] = match.slice(1, 5).map(Number) as [number, number, number, number];
  const tree = [npm.pid, ...descendants(npm.pid).map((p) => p.pid)];
  const total = tree.map(cpuOf).reduce((sum, cpu) => sum + cpu.own + cpu.reaped, 0);
  const figures = {
    npm: cpuOf(npm.pid).own,
    stack: cpuOf(stack).own,
    stackReaped: cpuOf(stack).reaped,
    simulator: cpuOf(simulator).own,
    api: cpuOf(api).own,
    worker: cpuOf(worker).own,
    total,
  };
  process.kill(-npm.pid, "SIGTERM");
  await npm.exited;
  await rm(storageDir, { recursive: true, force: true });
  return figures;
};

const results = new Map<string, Record<string, number>[]>();
for (let run = 0; run < runs; run++) {
  for (const [index, repo] of repos.entries()) {
    const label = `r${index}n${run}`;
    const load = loadavg()[0]!.toFixed(1);
    const figures = await measure(repo, label);
    console.log(`${path.basename(repo)} run ${run + 1} (load ${load}): ${Object.entries(figures).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(", ")}`);
    results.set(repo, [...(results.get(repo) ?? []), figures]);
  }
}
for (const [repo, list] of results) {
  const keys = Object.keys(list[0]!);
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  console.log(`${repo} median of ${list.length}: ${keys.map((k) => `${k} ${median(list.map((f) => f[k]!)).toFixed(2)}`).join(", ")}`);
}
await dropDatabases(`${serverUrl}/postgres`, `kling_startcost_${runId}`);
