import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const cliEntry = path.join(root, "apps/cli/kling-expand.mjs");

export type CliRun = { code: number | null; stdout: string; stderr: string };

// One process with stdout and stderr collected, killed when it outlives its time.
const collect = (command: string, args: string[], env: Record<string, string>, options: { stdin?: string; cwd?: string; timeoutMs?: number }): Promise<CliRun> =>
  new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd ?? root,
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 150_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(options.stdin ?? "");
  });

// Runs the CLI as a user would (its bin, a process of its own, stdout a pipe, not a terminal).
export const runCli = (args: string[], env: Record<string, string>, options: { stdin?: string; cwd?: string; timeoutMs?: number } = {}): Promise<CliRun> =>
  collect(process.execPath, [cliEntry, ...args], env, options);

// A command line exactly as the CLI printed it (a hint), run by a shell from the repository.
export const runShell = (commandLine: string, env: Record<string, string>, options: { timeoutMs?: number } = {}): Promise<CliRun> =>
  collect("sh", ["-c", commandLine], env, options);
