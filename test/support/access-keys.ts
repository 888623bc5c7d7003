import { execFile } from "node:child_process";
import path from "node:path";
import { addAccessKey } from "../../apps/domain/account/access-key.ts";
import { serverKeyFrom } from "../../apps/domain/crypto/server-key.ts";
import { testServerKey, type Stack } from "./stack.ts";

const repoRoot = path.resolve(import.meta.dirname, "../..");

// `npm run access-key -- <args>` as an operator runs it: a separate process on the stack's database
// and SERVER_KEY. Resolves with its exit code and the JSON line it printed.
export const runAccessKeyCli = (stack: Stack, args: string[]) =>
  new Promise<{ exitCode: number; output: any; stderr: string }>((resolve, reject) => {
    execFile(
      "npm",
      ["run", "--silent", "access-key", "--", ...args],
      { cwd: repoRoot, env: { ...process.env, DATABASE_URL: stack.env.databaseUrl, SERVER_KEY: testServerKey, LOG_LEVEL: "silent" }, timeout: 60_000 },
      (error, stdout, stderr) => {
        const exitCode = error ? (typeof error.code === "number" ? error.code : -1) : 0;
        const lastLine = stdout.trim().split("\n").at(-1) ?? "";
        try {
          resolve({ exitCode, output: lastLine ? JSON.parse(lastLine) : undefined, stderr });
        } catch {
          reject(new Error(`access-key CLI printed no JSON (exit ${exitCode}): ${stdout}\n${stderr}`));
        }
      },
    );
  });

// A fresh access-key pair for an account, straight through the domain (quicker than the CLI).
export const newAccessKey = (stack: Stack, accountId: string) => addAccessKey(stack.db, serverKeyFrom(testServerKey), accountId);

// Polls `probe` (a read through the public API) until it holds; resolves with how long that took,
// rejects at the deadline with the last thing seen.
export const waitUntil = async (probe: () => Promise<boolean | { ok: boolean; seen: unknown }>, timeoutMs: number, what: string) => {
  const started = Date.now();
  let last: unknown;
  for (;;) {
    const result = await probe();
    const ok = typeof result === "boolean" ? result : result.ok;
    if (typeof result !== "boolean") last = result.seen;
    if (ok) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms; last seen: ${JSON.stringify(last)}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
};
