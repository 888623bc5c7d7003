import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

export type ChildWorker = {
  process: ChildProcess;
  // Resolves once the worker printed its start line; rejects if it exits first.
  ready: Promise<void>;
  // Resolves with the exit code or signal once the process is gone.
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output: () => string;
  kill(signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
};

// The real worker entry point (apps/worker/main.ts) in its own processes, so a test can kill it the
// way an OOM killer or a lost machine would: SIGKILL, no shutdown sequence. `exited` is tsx's own
// process; with the whole group killed, the worker under it is gone too.
export const spawnWorker = (env: Record<string, string>): ChildWorker => {
  const child = spawn(process.execPath, [path.join(root, "node_modules/tsx/dist/cli.mjs"), "apps/worker/main.ts"], {
    cwd: root,
    // At info level: the start line it waits for is a log line, and silent would hide it.
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? root, ...env, LOG_LEVEL: "info" },
    stdio: ["ignore", "pipe", "pipe"],
    // tsx's CLI runs the script in a child of its own: the worker gets a process group, and signals
    // go to the whole group, so that a SIGKILL reaches the process that does the work.
    detached: true,
  });
  let output = "";
  const exited = once(child, "exit").then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  const ready = new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString("utf8");
      if (output.includes("worker started")) resolve();
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
    void exited.then(({ code, signal }) => reject(new Error(`worker exited (code ${code}, signal ${signal}) before it started:\n${output}`)));
  });
  ready.catch(() => undefined);
  return {
    process: child,
    ready,
    exited,
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
