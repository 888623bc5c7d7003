import { defineConfig } from "vitest/config";

// The long scale runs (test/scale/*.scale.ts): outside `npm test`'s include, one file at a time.
export default defineConfig({
  test: {
    include: ["test/scale/**/*.scale.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    reporters: ["default"],
    hookTimeout: 180_000,
    pool: "forks",
    maxWorkers: 1,
  },
});
