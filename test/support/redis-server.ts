import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { freePort } from "./free-port.ts";

export type PrivateRedis = {
  url: string;
  port: number;
  // SIGTERM and wait: a persistent instance saves its data first (Redis saves on shutdown when
  // save points are configured), a plain one loses everything.
  stop(): Promise<void>;
  // A new process on the same port; it loads what the last stop() saved, if anything.
  start(): Promise<void>;
  // SIGKILL, its saved data deleted, and a new empty process on the same port: a Redis without
  // persistence restarted by its supervisor.
  restartEmpty(): Promise<void>;
  // SIGSTOP / SIGCONT: the process keeps its sockets but answers nothing ("hung").
  freeze(): void;
  thaw(): void;
  // SIGKILL, nothing saved; the directory is removed. For the end of a run.
  kill(): Promise<void>;
  running(): boolean;
};

// A redis-server still running when this process exits (an interrupted run) goes with it.
const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const proc of live) proc.kill("SIGKILL");
});

export type PrivateRedisOptions = {
  // Keep data across stop()/start() (an RDB file written on shutdown), as a Redis with `save`
  // configured does. Without it: `--save "" --appendonly no`, like the shared test Redis.
  persistent?: boolean;
};

// A redis-server of the test's own (the binary on PATH) on a free loopback port, as a child
// process: the shared Redis must never be stopped, frozen or flushed, this one may be.
export const startPrivateRedis = async (options: PrivateRedisOptions = {}): Promise<PrivateRedis> => {
  const port = await freePort();
  const dir = await mkdtemp(path.join(tmpdir(), "kling-redis-"));
  let child: ChildProcess | undefined;
  let exited: Promise<unknown> = Promise.resolve();
  let frozen = false;

  const launch = async () => {
    const args = [
      "--port", String(port),
      "--bind", "127.0.0.1",
      "--dir", dir,
      "--dbfilename", "dump.rdb",
      "--appendonly", "no",
      "--save", options.persistent ? "3600 1" : "",
      "--daemonize", "no",
      "--loglevel", "warning",
    ];
    const proc = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    proc.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
    proc.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
    child = proc;
    live.add(proc);
    exited = once(proc, "exit").then(() => live.delete(proc));
    await waitUntilAnswering(port, proc, () => output);
  };

  const signal = async (sig: NodeJS.Signals) => {
    const proc = child;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    // A stopped process would not act on SIGTERM until continued.
    if (frozen && sig !== "SIGKILL") proc.kill("SIGCONT");
    frozen = false;
    proc.kill(sig);
    await exited;
  };

  await launch();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop: () => signal("SIGTERM"),
    start: launch,
    restartEmpty: async () => {
      await signal("SIGKILL");
      await rm(path.join(dir, "dump.rdb"), { force: true });
      await launch();
    },
    freeze: () => {
      child?.kill("SIGSTOP");
      frozen = true;
    },
    thaw: () => {
      child?.kill("SIGCONT");
      frozen = false;
    },
    kill: async () => {
      await signal("SIGKILL");
      await rm(dir, { recursive: true, force: true });
    },
    running: () => child !== undefined && child.exitCode === null && child.signalCode === null,
  };
};

const waitUntilAnswering = async (port: number, proc: ChildProcess, output: () => string) => {
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`redis-server on ${port} exited at start:\n${output()}`);
    const client = new Redis({ port, host: "127.0.0.1", lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on("error", () => undefined);
    try {
      await client.connect();
      // LOADING answers an error until the RDB is read: wait for a real PONG.
      if ((await client.ping()) === "PONG") return;
    } catch {
      // not yet
    } finally {
      client.disconnect();
    }
    if (Date.now() > deadline) throw new Error(`redis-server on ${port} did not answer within 10 s:\n${output()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
};
