import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createWriteStream } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { builtEntry } from "../../ops/build/build-apps.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

export type ServiceKind = "api" | "worker" | "simulator";

// The entry point of each app and the line it prints once it is up (its runService describe line).
const services: Record<ServiceKind, { entry: string; ready: RegExp }> = {
  api: { entry: "apps/api/main.ts", ready: /api listening on/ },
  worker: { entry: "apps/worker/main.ts", ready: /worker started/ },
  simulator: { entry: "apps/simulator/main.ts", ready: /provider simulator listening/ },
};

export type Exit = { code: number | null; signal: NodeJS.Signals | null };

export type ChildService = {
  kind: ServiceKind;
  pid: number;
  // Resolves once the app printed its start line; rejects if it exits first.
  ready: Promise<void>;
  // Resolves once the process is gone, with its exit code or signal.
  exited: Promise<Exit>;
  alive(): boolean;
  // The last of what it printed (stdout and stderr interleaved).
  output(): string;
  kill(signal: NodeJS.Signals): Promise<Exit>;
};

const OUTPUT_KEPT = 256 * 1024;

// Children run in process groups of their own, so they would outlive this process: whatever is
// still running when it exits (an interrupted run, a failed test) is killed with it.
const running = new Set<number>();
process.on("exit", () => {
  for (const pid of running) {
    try {
      process.kill(-pid, "SIGKILL");
    } catch {
      // gone already
    }
  }
});

// One of our apps as a real process, started the way it is deployed (its main.ts from the build the
// tests' global setup made, env only), so a test can kill it as an OOM killer or a lost machine
// would: SIGKILL, no shutdown sequence. The process gets a group of its own so that a signal to
// the group reaches anything it started too.
// SERVICE_NODE_ARGS (space-separated) goes to each such node, for profiling a benchmark's processes
// (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof": Node refuses --cpu-prof in NODE_OPTIONS).
const extraNodeArgs = (process.env.SERVICE_NODE_ARGS ?? "").split(" ").filter(Boolean);
export const spawnService = (kind: ServiceKind, env: Record<string, string>, options: { logFile?: string } = {}): ChildService => {
  const service = services[kind];
  const child: ChildProcess = spawn(process.execPath, [...extraNodeArgs, "--enable-source-maps", builtEntry(service.entry)], {
    cwd: root,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? root, ...env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  running.add(child.pid!);
  const log = options.logFile ? createWriteStream(options.logFile, { flags: "a" }) : undefined;
  let output = "";
  let started = false;
  const exited = once(child, "exit").then(([code, signal]) => {
    running.delete(child.pid!);
    log?.end(`--- exited (code ${code}, signal ${signal})\n`);
    return { code: code as number | null, signal: signal as NodeJS.Signals | null };
  });
  const ready = new Promise<void>((resolve, reject) => {
    const take = (chunk: Buffer) => {
      const text = chunk.toString("utf8");
      log?.write(text);
      output = (output + text).slice(-OUTPUT_KEPT);
      if (!started && service.ready.test(output)) {
        started = true;
        resolve();
      }
    };
    child.stdout!.on("data", take);
    child.stderr!.on("data", take);
    void exited.then(({ code, signal }) => reject(new Error(`${kind} exited (code ${code}, signal ${signal}) before it started:\n${output.slice(-4_000)}`)));
  });
  ready.catch(() => undefined);
  return {
    kind,
    pid: child.pid!,
    ready,
    exited,
    alive: () => child.exitCode === null && child.signalCode === null,
    output: () => output,
    kill: async (signal) => {
      try {
        process.kill(-child.pid!, signal);
      } catch {
        // the group is gone already
      }
      return exited;
    },
  };
};
