import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createDb } from "../../apps/domain/db/database.ts";
import { faultCatalog } from "../faults/fault-catalog.ts";
import { NOT_AT_INJECTION_POINT, runFault } from "../faults/fault-run.ts";
import { expectAllAccountedFor } from "../support/accounting.ts";
import { resultSize } from "../support/fault-kit.ts";
import { makeImage } from "../support/images.ts";

// A short run of `npm run faults`, from the same code, each fault on a stack of real processes (API
// and worker as children, a Redis of the test's own, Postgres through a proxy) with a small batch.
// The whole matrix is `npm run faults`.

// One fault per kind of part the matrix breaks: a process killed, Redis emptied, Postgres silent.
const cases = [
  { fault: "worker_sigkill_archiving", when: "the worker process is SIGKILLed while tasks are archiving and a new one starts" },
  { fault: "redis_restarted_empty", when: "the test's own Redis is killed and restarted empty (jobs, schedules and slot ledger gone)" },
  { fault: "postgres_hung", when: "Postgres goes silent for our processes for 6 s (a proxy holds every byte)" },
];

let logDir: string;
let sourceImage: Buffer;
beforeAll(async () => {
  logDir = await mkdtemp(path.join(tmpdir(), "kling-fault-matrix-"));
  sourceImage = await makeImage(400, 400);
});
afterAll(() => rm(logDir, { recursive: true, force: true }));

// The three cases side by side: each has its own processes, Redis, database and proxy, and most of
// a case's time is waiting (its stack starting, tasks reaching the injection point, the fault held,
// the 1-2 s provider runs after it), not CPU. Nothing in a case is timed: it injects when its tasks
// are in the states it is meant for and then waits for them to end.
describe("the fault matrix, short", () => {
  for (const { fault: name, when } of cases) {
    it.concurrent(`when ${when}, then every task succeeds, none is lost and none is created twice at the provider`, async ({ expect }) => {
      const fault = faultCatalog.find((f) => f.name === name)!;
      const result = await runFault(fault, {
        templateDatabaseUrl: inject("templateDatabaseUrl"),
        tasks: 8,
        deadlineS: 60,
        logDir,
        sourceImage,
        // The per-task accounting of the other fault tests as well: each task's one provider task
        // is the one it tracks, its images are the expanded size, and no slot is left held.
        inspect: async (stack, tasks) => {
          const db = createDb(stack.databaseUrl, { poolSize: 2 });
          try {
            await expectAllAccountedFor(
              { db, api: stack.api, simulator: stack.simulator, env: { redisUrl: stack.redis.url, queuePrefix: stack.queuePrefix } },
              tasks.map((t) => ({ id: t.id, key: stack.api.key, status: "succeeded" as const, imageSize: resultSize })),
              { capacity: 4 },
            );
          } finally {
            await db.destroy();
          }
        },
      });
      const explained = [...result.crashes, ...result.notes].join("\n");
      expect(result, explained).toMatchObject({ tasks: 8, succeeded: 8, lost: 0, duplicatedAtProvider: 0 });
      expect(result.crashes).toEqual([]);
      // The fault hit tasks in the states it is meant for, not a finished batch.
      expect(result.notes.filter((note) => note.startsWith(NOT_AT_INJECTION_POINT))).toEqual([]);
    }, 180_000);
  }
});

describe("npm run faults, its settings", () => {
  it("when FAULTS_ONLY names a fault that does not exist, then it stops at once with exit code 2 and the names it knows", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "test/faults/run-faults.main.ts"], {
      env: { PATH: process.env.PATH ?? "", FAULTS_ONLY: "redis_hung,no_such_fault" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
    const [code] = await once(child, "exit");
    expect(code).toBe(2);
    expect(stderr).toMatch(/FAULTS_ONLY.*must name faults among: worker_sigkill_submitting, .*malformed_remote_answers/);
  });
});
