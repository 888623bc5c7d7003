import { spawn, type ChildProcess, type StdioOptions } from "node:child_process";
import { once } from "node:events";
import { readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { builtEntry } from "../../ops/build/build-apps.mjs";

// Real processes for the process and logging tests: spawned as a user or a process manager would,
// their output kept, their process tree read from /proc.

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

export type Exit = { code: number | null; signal: NodeJS.Signals | null };

export type Captured = {
  child: ChildProcess;
  pid: number;
  output: () => string;
  // Resolves with the first match in the output so far or to come; rejects if the process exits
  // first or the time runs out, with the output in the message.
  waitFor: (pattern: string | RegExp, timeoutMs?: number) => Promise<RegExpMatchArray>;
  exited: Promise<Exit>;
  // Resolves once its output has ended: every process holding it is gone (a child may outlive the
  // one spawned here) and all they wrote has been read. A process seen gone in /proc may still
  // have its last lines on the way.
  closed: Promise<void>;
};

export const spawnCaptured = (
  command: string,
  args: string[],
  options: { env: Record<string, string>; ipc?: boolean; detached?: boolean; stdin?: boolean },
): Captured => {
  const stdin = options.stdin ? "pipe" : "ignore";
  const stdio: StdioOptions = options.ipc ? [stdin, "pipe", "pipe", "ipc"] : [stdin, "pipe", "pipe"];
  const child = spawn(command, args, { cwd: repoRoot, env: options.env, stdio, detached: options.detached ?? false });
  let output = "";
  const waiters = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    output += chunk.toString("utf8");
    for (const check of waiters) check();
  };
  child.stdout!.on("data", onData);
  child.stderr!.on("data", onData);
  const exited = once(child, "exit").then(([code, signal]) => ({ code, signal }) as Exit);
  const closed = once(child, "close").then(() => undefined);
  let gone = false;
  void exited.then(() => {
    gone = true;
    for (const check of waiters) check();
  });

  const waitFor = (pattern: string | RegExp, timeoutMs = 60_000) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const regex = typeof pattern === "string" ? new RegExp(pattern.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")) : pattern;
      const timer = setTimeout(() => finish(new Error(`not seen within ${timeoutMs} ms: ${regex}\n--- output ---\n${output}`)), timeoutMs);
      const finish = (error?: Error, match?: RegExpMatchArray) => {
        clearTimeout(timer);
        waiters.delete(check);
        if (error) reject(error);
        else resolve(match!);
      };
      const check = () => {
        const match = output.match(regex);
        if (match) return finish(undefined, match);
        if (gone) finish(new Error(`process exited before ${regex} was seen\n--- output ---\n${output}`));
      };
      waiters.add(check);
      check();
    });

  return { child, pid: child.pid!, output: () => output, waitFor, exited, closed };
};

// An app entry point the way `npm start` runs it: from the build (the global setup made it). A
// test's own fixture program is not part of the build and runs through tsx.
export const spawnApp = (entry: string, env: Record<string, string>, options: { ipc?: boolean } = {}) =>
  spawnCaptured(process.execPath, entry.startsWith("apps/") ? ["--enable-source-maps", builtEntry(entry)] : ["--import", "tsx", entry], {
    env: { ...baseEnv(), ...env },
    ipc: options.ipc,
  });

// A clean environment (no vitest variables), with what node and npm need to run.
export const baseEnv = (): Record<string, string> => ({
  PATH: process.env.PATH ?? "/usr/bin:/bin",
  HOME: process.env.HOME ?? repoRoot,
  npm_config_update_notifier: "false",
  npm_config_fund: "false",
});

// A process as /proc shows it. Pids are reused quickly on a busy machine (pid_max is 32768 here),
// so a process is known by its pid and its start time together.
export type ProcId = { pid: number; startTime: string };
type ProcStat = ProcId & { ppid: number; state: string };

const readStat = (pid: number): ProcStat | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name may hold spaces and parentheses: the fields start after the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // After the name: state (3), ppid (4), ..., starttime (22).
    return { pid, state: fields[0]!, ppid: Number(fields[1]), startTime: fields[19]! };
  } catch {
    return undefined;
  }
};

export const identify = (pid: number): ProcId | undefined => {
  const stat = readStat(pid);
  return stat && { pid, startTime: stat.startTime };
};

// A zombie has exited already; it only waits for its parent to read its status.
export const isAlive = (proc: ProcId) => {
  const stat = readStat(proc.pid);
  return stat !== undefined && stat.startTime === proc.startTime && stat.state !== "Z" && stat.state !== "X";
};

// For clean-up after a failed test: only the very process we saw, never a newcomer with its pid.
export const killIfAlive = (proc: ProcId, signal: NodeJS.Signals = "SIGKILL") => {
  try {
    if (isAlive(proc)) process.kill(proc.pid, signal);
  } catch {
    // gone meanwhile
  }
};

export const commandLine = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim();
  } catch {
    return "";
  }
};

// Every living process below pid, at any depth.
export const descendants = (pid: number): ProcId[] => {
  const stats = readdirSync("/proc")
    .filter((name) => /^\d+$/.test(name))
    .map((name) => readStat(Number(name)))
    .filter((s): s is ProcStat => s !== undefined && s.state !== "Z");
  const found: ProcId[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const parent = queue.shift()!;
    for (const s of stats) {
      if (s.ppid !== parent) continue;
      found.push({ pid: s.pid, startTime: s.startTime });
      queue.push(s.pid);
    }
  }
  return found;
};

export const portIsFree = (port: number) =>
  new Promise<boolean>((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });

export const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });

// Polls until check() holds; the bound is the assertion.
export const within = async (what: string, timeoutMs: number, check: () => boolean | Promise<boolean>, everyMs = 100) => {
  const started = Date.now();
  for (;;) {
    if (await check()) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
};

// pino's JSON lines in some output, behind `npm start`'s "[name] " prefix or not.
export const jsonLines = (output: string): Record<string, any>[] =>
  output
    .split("\n")
    .map((line) => line.replace(/^\[[\w-]+\] /, "").trim())
    .filter((line) => line.startsWith("{"))
    .flatMap((line) => {
      try {
        return [JSON.parse(line) as Record<string, any>];
      } catch {
        return [];
      }
    });
