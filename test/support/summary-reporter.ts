import type { Reporter, TestModule } from "vitest/node";

type Counts = { passed: number; failed: number; skipped: number; files: number; fileMs: number };

const line = (c: Counts) => `${c.passed} passed, ${c.failed} failed${c.skipped ? `, ${c.skipped} skipped` : ""}`;

// Ends the run with the plain "N passed, N failed" line that CI reads, whatever the other reporters
// print; above it, the same per tier (vitest project) with its files' summed run time (files run
// two at a time, so the tiers' times add up to more than the wall time).
export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>) {
    const total: Counts = { passed: 0, failed: 0, skipped: 0, files: 0, fileMs: 0 };
    const tiers = new Map<string, Counts>();
    for (const module of testModules) {
      const name = module.project.name || "default";
      let tier = tiers.get(name);
      if (!tier) tiers.set(name, (tier = { passed: 0, failed: 0, skipped: 0, files: 0, fileMs: 0 }));
      tier.files++;
      const d = module.diagnostic();
      tier.fileMs += d.environmentSetupDuration + d.prepareDuration + d.collectDuration + d.setupDuration + d.duration;
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
    process.stdout.write(`\n${line(total)}\n`);
  }
}
