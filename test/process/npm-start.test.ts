import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { afterAll, describe, expect, inject, it, type ExpectStatic } from "vitest";
import { builtEntry } from "../../ops/build/build-apps.mjs";
import { cloneDatabase, dropCloneLater, dropDatabases } from "../support/databases.ts";
import { ratios, testImage } from "../support/fault-kit.ts";
import { call, waitForTask } from "../support/http.ts";
import { baseEnv, commandLine, descendants, freePort, identify, isAlive, killIfAlive, portIsFree, spawnCaptured, within, type Captured, type ProcId } from "./process-kit.ts";

// `npm start` as a person or a process manager runs it: the real npm command, stopped by a signal
// to npm's pid, its children crashed by SIGKILL. Each run has its own ports, database, queue prefix
// and storage directory. The crash test's stack creates and migrates its database itself, as on a
// first `npm start`; the others start on a copy of the migrated template, as on every later start
// (the stack then skips `prisma migrate deploy`, ~2-3 s of CPU a stack; docs/operations.md).
const LOCAL_KEY = "local-dev-key-0123456789";
// Graceful stops take a second or two; the bound leaves room for a loaded machine.
const STOP_BOUND_MS = 25_000;

type RunningStack = {
  npm: Captured;
  apiUrl: string;
  ports: number[];
  npmProc: ProcId;
  procs: { stack: ProcId; simulator: ProcId; api: ProcId; worker: ProcId };
  // Every process under npm once the stack was ready: local-stack, the apps, their helpers.
  tree: ProcId[];
};

describe("npm start", () => {
  const runId = randomUUID().slice(0, 8);
  const databasePrefix = `kling_npmstart_${runId}`;
  const serverUrl = new URL(inject("templateDatabaseUrl"));
  const storageDirs: string[] = [];
  const stacks: RunningStack[] = [];
  const clones: string[] = [];

  afterAll(async () => {
    // A failed test may leave processes behind: end them by pid, never by name.
    for (const stack of stacks) {
      for (const proc of [stack.npmProc, ...stack.tree, ...descendants(stack.procs.stack.pid)]) killIfAlive(proc);
    }
    await dropDatabases(serverUrl.toString(), databasePrefix);
    for (const clone of clones) void dropCloneLater(clone);
    // Only this file's queue prefixes; the Redis is shared.
    const redis = new Redis(inject("redisUrl"));
    for await (const keys of redis.scanStream({ match: `npmstart${runId}*`, count: 500 })) if (keys.length > 0) await redis.del(...(keys as string[]));
    redis.disconnect();
    await Promise.all(storageDirs.map((dir) => rm(dir, { recursive: true, force: true })));
  });

  // In a terminal: under util-linux `script`, which gives it a pseudo-terminal and passes what we
  // write (a Ctrl-C) to it as a person's keyboard would.
  const startNpm = async (label: string, options: { terminal?: boolean; freshDatabase?: boolean; env?: Record<string, string> } = {}): Promise<RunningStack> => {
    const ports = [await freePort(), await freePort()];
    const database = options.freshDatabase
      ? Object.assign(new URL(serverUrl), { pathname: `/${databasePrefix}_${label}` }).toString()
      : await cloneDatabase(inject("templateDatabaseUrl"), `npmstart_${runId}_${label}`);
    if (!options.freshDatabase) clones.push(database);
    const storageDir = await mkdtemp(path.join(tmpdir(), "kling-npmstart-"));
    storageDirs.push(storageDir);
    const command: [string, string[]] = options.terminal ? ["script", ["-qefc", "npm start", "/dev/null"]] : ["npm", ["start"]];
    const npm = spawnCaptured(...command, {
      stdin: options.terminal,
      env: {
        ...baseEnv(),
        PORT: String(ports[0]),
        SIMULATOR_PORT: String(ports[1]),
        DATABASE_URL: database,
        REDIS_URL: inject("redisUrl"),
        QUEUE_PREFIX: `npmstart${runId}${label}`,
        STORAGE_DIR: storageDir,
        LOG_LEVEL: "info",
        TERM: "xterm",
        ...options.env,
      },
      // Its own process group, as under a process manager: the terminal's signals are not in play.
      detached: true,
    });
    const match = await npm.waitFor(/processes {2}stack (\d+), simulator (\d+), api (\d+), worker (\d+)/, 150_000);
    const tree = descendants(npm.pid);
    const known = (pid: string | undefined) => {
      const proc = tree.find((p) => p.pid === Number(pid));
      if (!proc) throw new Error(`pid ${pid} from the ready block is not under npm (${tree.map((p) => p.pid).join(", ")})`);
      return proc;
    };
    const running: RunningStack = {
      npm,
      npmProc: identify(npm.pid)!,
      apiUrl: `http://127.0.0.1:${ports[0]}`,
      ports,
      procs: { stack: known(match[1]), simulator: known(match[2]), api: known(match[3]), worker: known(match[4]) },
      tree,
    };
    stacks.push(running);
    return running;
  };

  const expectAllGone = async (stack: RunningStack, procs: ProcId[]) => {
    await within("every process of the stack gone", STOP_BOUND_MS, () => procs.every((proc) => !isAlive(proc)));
    // Their last lines ("[stack] stopped") may still be in the pipe when /proc shows them gone.
    await stack.npm.closed;
    await within("the ports free", 5_000, async () => (await Promise.all(stack.ports.map(portIsFree))).every(Boolean));
  };

  // The apps drained rather than being killed: each logged its stop (a SIGKILLed app logs nothing),
  // as JSON or, in a terminal, pretty-printed in colour.
  const expectDrained = (stack: RunningStack, expect: ExpectStatic) => {
    const output = stack.npm.output().replace(/\u001b\[[\d;]*m/g, "");
    for (const name of ["api", "worker", "simulator"]) {
      expect(output).toMatch(new RegExp(`\\[${name}\\] .*("msg":"stopping"|INFO \\(${name}\\): stopping\\r?$)`, "m"));
    }
    expect(output).toContain("[stack] stopped");
  };

  // Each stack costs a whole boot (npm, migrate, simulator, API, worker: the file's CPU), so each
  // way a stop arrives is one stack. npm passes SIGINT and SIGTERM on alike and local-stack treats
  // them alike: SIGTERM is the crash test's stop (below) and SIGINT the Ctrl-C test's (npm's and the
  // terminal's at once). SIGHUP is not passed on: local-stack notices that npm is gone.
  // All four side by side: each stack has its own ports, database, queue prefix and storage, and
  // most of a test's time is waiting (for its stack to come up, for a restart's backoff, for its
  // processes to drain and exit), not CPU.
  it.concurrent("when npm's pid gets SIGHUP, then every process it started exits and the ports are free", { timeout: 200_000 }, async ({ expect }) => {
    const stack = await startNpm("sighup");
    process.kill(stack.npm.pid, "SIGHUP");
    await expectAllGone(stack, [stack.npmProc, ...stack.tree]);
    expectDrained(stack, expect);
  });

  it.concurrent("when Ctrl-C is pressed in the terminal running npm start, then every process it started exits and the ports are free", { timeout: 200_000 }, async ({ expect }) => {
    const stack = await startNpm("ctrlc", { terminal: true });
    stack.npm.child.stdin!.write("\u0003");
    await expectAllGone(stack, [stack.npmProc, ...stack.tree]);
    expect(stack.npm.output()).toContain("[stack] SIGINT; stopping");
    expectDrained(stack, expect);
  });

  it.concurrent("when local-stack itself is SIGKILLed, then its children notice and exit on their own", { timeout: 200_000 }, async ({ expect }) => {
    const stack = await startNpm("sigkill");
    const children = descendants(stack.procs.stack.pid);
    expect(children.length).toBeGreaterThanOrEqual(3);
    process.kill(stack.procs.stack.pid, "SIGKILL");
    await expectAllGone(stack, children);
  });

  it.concurrent("when a child crashes, then it is restarted after a backoff and the stack works again; when npm's pid then gets SIGTERM, every process it started exits and the ports are free", { timeout: 300_000 }, async ({ expect }) => {
    // The simulator's runs take 200 ms instead of its default 3 s: the task below proves the
    // restarted worker works, not how long a provider takes.
    const stack = await startNpm("crash", { freshDatabase: true, env: { SIM_RUN_MS: "200" } });
    const killed = [stack.procs.worker, stack.procs.api];
    process.kill(stack.procs.worker.pid, "SIGKILL");
    process.kill(stack.procs.api.pid, "SIGKILL");
    await stack.npm.waitFor(/\[stack\] worker exited \(signal SIGKILL\) after [\d.]+ s; restarting in 1\.0 s \(restart 1\)/, 10_000);
    await stack.npm.waitFor(/\[stack\] api exited \(signal SIGKILL\) after [\d.]+ s; restarting in 1\.0 s \(restart 1\)/, 10_000);

    const appPid = (entry: string) =>
      descendants(stack.procs.stack.pid).find((p) => commandLine(p.pid).endsWith(entry) && !killed.some((k) => k.pid === p.pid && k.startTime === p.startTime));
    await within("a new worker and api", 60_000, () => appPid(builtEntry("apps/worker/main.ts")) !== undefined && appPid(builtEntry("apps/api/main.ts")) !== undefined);
    await within("the api ready again", 90_000, async () => (await call(stack.apiUrl, "GET", "/readyz").catch(() => ({ status: 0 }))).status === 200, 250);

    // The restarted worker does the work: a task goes all the way through.
    const created = await call(stack.apiUrl, "POST", "/v1/tasks", { key: LOCAL_KEY, body: { image: await testImage(), ...ratios } });
    expect(created.status).toBe(202);
    const done = await waitForTask(stack.apiUrl, LOCAL_KEY, created.body.id, ["succeeded", "failed"], 90_000);
    expect(done.status).toBe("succeeded");

    // And SIGTERM to npm's pid stops the restarted processes with the rest, drained.
    const tree = [stack.npmProc, ...descendants(stack.npm.pid)];
    process.kill(stack.npm.pid, "SIGTERM");
    await expectAllGone(stack, tree);
    expectDrained(stack, expect);
  });
});
