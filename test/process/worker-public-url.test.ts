import { afterAll, describe, expect, it } from "vitest";
import { EX_CONFIG } from "../../apps/domain/process/run-service.ts";
import { parseWorkerConfig } from "../../apps/worker/worker.config.ts";
import { startWorker } from "../../apps/worker/worker.server.ts";
import { spawnApp, type Captured } from "./process-kit.ts";

// Callback URLs carry per-task tokens and image links are signed: a worker that guessed the API's
// address (it used to take http://127.0.0.1:3000 whatever PORT the API had) sends them to whatever
// listens there. `npm start` sets PUBLIC_BASE_URL for its worker; a worker started on its own must
// be told.
describe("a worker without PUBLIC_BASE_URL", () => {
  const started: Captured[] = [];
  afterAll(() => {
    for (const proc of started) if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill("SIGKILL");
  });

  it("when started as a process, then it refuses to start with exit 78 and a message naming the variable", async () => {
    // Unreachable database and Redis: the refusal must come before anything is contacted.
    const proc = spawnApp("apps/worker/main.ts", { PORT: "4123", DATABASE_URL: "postgresql://nobody@127.0.0.1:1/none", REDIS_URL: "redis://127.0.0.1:1" });
    started.push(proc);
    expect(await proc.exited).toEqual({ code: EX_CONFIG, signal: null });
    expect(proc.output()).toMatch(/PUBLIC_BASE_URL: must be set/);
    expect(proc.output()).toMatch(/npm start sets it/);
    expect(proc.output()).not.toMatch(/worker started/);
  });

  it("when started in-process without it, then startWorker refuses too, and never takes port 3000 as the address", async () => {
    const config = parseWorkerConfig({});
    expect(config.PUBLIC_BASE_URL).toBeUndefined();
    await expect(startWorker(config)).rejects.toThrow(/PUBLIC_BASE_URL: must be set/);
  });
});
