import { defineConfig } from "vitest/config";
import { e2eFiles, ownProcessFiles, unitFiles } from "./test/tiers.ts";

// Three tiers in one run (test/tiers.ts says which file is where): `npm test` runs them all,
// `npm run test:unit` / `test:integration` / `test:e2e` one each (vitest --project; e2e is two projects).
const servicesSetup = ["test/support/global-setup.ts"];

export default defineConfig({
  test: {
    reporters: ["default", "./test/support/summary-reporter.ts"],
    // TEST_CPU_LOG=<file>: each test file's CPU, one JSON line each (test/support/cpu-per-file.ts).
    setupFiles: process.env.TEST_CPU_LOG ? ["test/support/cpu-per-file.ts"] : [],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // expect.poll returns as soon as its condition holds; vitest's default 1 s bound failed a loaded
    // run on a condition that held later (docs/testing.md). A poll that bounds a time on purpose
    // says so with its own timeout.
    expect: { poll: { timeout: 10_000 } },
    // Files run in parallel forks, each with its own servers, queue prefix and data. More forks than
    // the machine's two cores: a file spends most of its time waiting (stacks starting, provider run
    // times, lock lapses, restarts), not computing (docs/testing.md). TEST_FORKS overrides it.
    pool: "forks",
    maxWorkers: Number(process.env.TEST_FORKS ?? 4),
    projects: [
      {
        extends: true,
        // No global setup: pure rules need neither Postgres nor Redis. Pure rules share no state,
        // so files reuse their worker's loaded modules (see integration).
        test: { name: "unit", include: unitFiles, isolate: false },
      },
      {
        extends: true,
        test: {
          name: "integration",
          include: ["test/**/*.test.ts"],
          exclude: [...unitFiles, ...e2eFiles],
          globalSetup: servicesSetup,
          // Files reuse their worker's loaded modules: importing the app (express, bullmq, prisma,
          // sharp, the AWS SDK) again for each of ~90 files cost more than any one file's tests. A
          // file still starts its own stack (queue prefix, database copy), so nothing it asserts
          // is shared.
          isolate: false,
        },
      },
      {
        extends: true,
        test: {
          name: "e2e",
          include: e2eFiles,
          exclude: ownProcessFiles,
          globalSetup: servicesSetup,
          // The programs run as child processes; the test process only drives them, so its loaded
          // modules are reused too: a fresh process per file cost ~1 s of CPU each to import the app
          // again (docs/testing.md).
          isolate: false,
        },
      },
      {
        extends: true,
        // The e2e files that change their own process's state (test/tiers.ts): a fresh process each.
        test: { name: "e2e-own-process", include: ownProcessFiles, globalSetup: servicesSetup },
      },
    ],
  },
});
