import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { EX_CONFIG, EX_PORT_IN_USE } from "../domain/process/run-service.ts";
import { prefixLines } from "./line-prefixer.ts";
import { nextRestartDelay } from "./restart-backoff.ts";

export type ChildSpec = {
  name: string;
  // What node runs: an app's build (`--enable-source-maps dist/apps/api/main.js`, see main.ts) or,
  // in a test, a fixture program.
  nodeArgs: string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  say: (line: string) => void;
  // The child refused its configuration (exit 78): restarting it would fail the same way.
  onConfigError: (name: string) => void;
  // The child could not listen, its port being taken (exit 98): a restart would meet the same holder.
  onPortInUse: (name: string) => void;
};

export type SupervisedChild = ReturnType<typeof superviseChild>;

const describeExit = (code: number | null, signal: NodeJS.Signals | null) => (signal ? `signal ${signal}` : `code ${code}`);
const seconds = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;

// Runs one app as a child process and restarts it when it exits on its own, with backoff.
//
// node itself runs the built app, nothing between us and it (tsx's CLI was a second process that
// relayed SIGINT/SIGTERM its own way: it SIGKILLed the app if the app had not acknowledged the
// signal over tsx's IPC within 30 ms, which a busy process misses, and it did not relay SIGHUP).
// The IPC channel lets the app notice when this process dies, even by SIGKILL (onParentGone), and
// its own process group keeps a terminal's Ctrl-C from reaching it directly: the stack stops its
// children itself, in order.
export const superviseChild = (spec: ChildSpec) => {
  let child: ChildProcess | undefined;
  let stopping = false;
  let delayMs: number | undefined;
  let restartTimer: NodeJS.Timeout | undefined;
  let restarts = 0;

  const start = () => {
    restartTimer = undefined;
    const startedAt = Date.now();
    const current = spawn(process.execPath, spec.nodeArgs, {
      cwd: spec.cwd,
      env: spec.env,
      stdio: ["ignore", "pipe", "pipe", "ipc"],
      detached: true,
    });
    child = current;
    prefixLines(spec.name, current.stdout!, process.stdout);
    prefixLines(spec.name, current.stderr!, process.stderr);
    current.on("error", (error) => spec.say(`${spec.name} could not be started: ${error.message}`));
    current.once("exit", (code, signal) => {
      if (child === current) child = undefined;
      if (stopping) return;
      if (code === EX_CONFIG) return spec.onConfigError(spec.name);
      if (code === EX_PORT_IN_USE) return spec.onPortInUse(spec.name);
      const uptimeMs = Date.now() - startedAt;
      delayMs = nextRestartDelay(delayMs, uptimeMs);
      restarts += 1;
      spec.say(`${spec.name} exited (${describeExit(code, signal)}) after ${seconds(uptimeMs)}; restarting in ${seconds(delayMs)} (restart ${restarts})`);
      restartTimer = setTimeout(start, delayMs);
    });
  };

  // SIGTERM, then SIGKILL to its whole process group if it has not exited by the deadline.
  const stop = async (deadlineMs: number) => {
    stopping = true;
    if (restartTimer) clearTimeout(restartTimer);
    const current = child;
    if (!current || current.exitCode !== null || current.signalCode !== null) return;
    const exited = once(current, "exit");
    current.kill("SIGTERM");
    const timer = setTimeout(() => {
      spec.say(`${spec.name} did not stop within ${seconds(deadlineMs)}; killing it`);
      try {
        process.kill(-current.pid!, "SIGKILL");
      } catch {
        current.kill("SIGKILL");
      }
    }, deadlineMs);
    await exited;
    clearTimeout(timer);
  };

  start();
  return { name: spec.name, pid: () => child?.pid, restarts: () => restarts, stop };
};
