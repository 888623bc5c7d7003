import type { Reporter, SerializedError, TestModule } from "vitest/node";

type Counts = { passed: number; failed: number; skipped: number; files: number; fileMs: number };

const line = (c: Counts) => `${c.passed} passed, ${c.failed} failed${c.skipped ? `, ${c.skipped} skipped` : ""}`;

// Ends the run with the plain "N passed, N failed" line that CI reads, whatever the other reporters
// print; above it, the same per tier (vitest project) with its files' summed run time (files run
// several at a time, so the tiers' times add up to more than the wall time). Errors outside any test (a
// file whose hooks failed, an error thrown after its test ended) fail the run too, so the line says
// so: "0 failed" above a red exit misled a reader once.
export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<SerializedError> = []) {
    const total: Counts = { passed: 0, failed: 0, skipped: 0, files: 0, fileMs: 0 };
    let filesFailedOutsideTests = 0;
    const tiers = new Map<string, Counts>();
    for (const module of testModules) {
      const name = module.project.name || "default";
      let tier = tiers.get(name);
      if (!tier) tiers.set(name, (tier = { passed: 0, failed: 0, skipped: 0, files: 0, fileMs: 0 }));
      tier.files++;
      const d = module.diagnostic();
      tier.fileMs += d.environmentSetupDuration + d.prepareDuration + d.collectDuration + d.setupDuration + d.duration;
      if (module.state() === "failed" && ![...module.children.allTests()].some((t) => t.result().state === "failed")) filesFailedOutsideTests++;
      for (const test of module.children.allTests()) {
        const state = test.result().state;
        const key = state === "passed" ? "passed" : state === "failed" ? "failed" : "skipped";
        tier[key]++;
        total[key]++;
      }
    }
    if (tiers.size > 1) {
      for (const [name, c] of [...tiers].sort(([a], [b]) => a.localeCompare(b))) {
        process.stdout.write(`\n${name}: ${line(c)} (${c.files} files, ${(c.fileMs / 1000).toFixed(1)} s of file time)`);
      }
      process.stdout.write("\n");
    }
    const outside = [
      filesFailedOutsideTests ? `${filesFailedOutsideTests} file(s) failed outside their tests` : "",
      unhandledErrors.length ? `${unhandledErrors.length} unhandled error(s)` : "",
    ].filter(Boolean);
    process.stdout.write(`\n${line(total)}${outside.length ? `; ${outside.join(", ")}` : ""}\n`);
  }
}
