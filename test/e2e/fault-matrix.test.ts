import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createDb } from "../../apps/domain/db/prisma-client.ts";
import { faultCatalog } from "../faults/fault-catalog.ts";
import { runFault } from "../faults/fault-run.ts";
import { expectAllAccountedFor } from "../support/accounting.ts";
import { resultSize } from "../support/fault-kit.ts";
import { makeImage } from "../support/images.ts";

// A short run of `npm run faults`, from the same code: the cheap faults that pass today, each on a
// stack of real processes (API and worker as children, a private Redis, Postgres through a proxy)
// with a small batch. The whole matrix, with the faults that still lose tasks, is `npm run faults`.

const cases = [
  { fault: "worker_sigkill_archiving", when: "the worker is SIGKILLed while tasks are archiving and a new one starts" },
  { fault: "callbacks_duplicated", when: "every callback comes twice and some out of order" },
  { fault: "callbacks_forged", when: "forged callbacks (bad token, bad, missing, stale or foreign signature) hit running tasks" },
];

let logDir: string;
let sourceImage: Buffer;
beforeAll(async () => {
  logDir = await mkdtemp(path.join(tmpdir(), "kling-fault-matrix-"));
  sourceImage = await makeImage(400, 400);
});
afterAll(() => rm(logDir, { recursive: true, force: true }));

describe("the fault matrix, short", () => {
  for (const { fault: name, when } of cases) {
    it(`when ${when}, then every task succeeds, none is lost and none is created twice at the provider`, async () => {
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
              { db, api: stack.api, simulator: stack.simulator },
              tasks.map((t) => ({ id: t.id, key: stack.api.key, status: "succeeded" as const, imageSize: resultSize })),
              { capacity: 4 },
            );
          } finally {
            await db.$disconnect();
          }
        },
      });
      const explained = [...result.crashes, ...result.notes].join("\n");
      expect(result, explained).toMatchObject({ tasks: 8, succeeded: 8, lost: 0, duplicatedAtProvider: 0 });
      expect(result.crashes).toEqual([]);
    }, 180_000);
  }
});
