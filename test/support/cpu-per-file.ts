import { appendFileSync, readFileSync } from "node:fs";
import { afterAll, beforeAll } from "vitest";

// TEST_CPU_LOG=<file> (vitest.config.ts adds this setup file only then): one line per test file with
// the CPU it cost, to find where a run's time goes (docs/testing.md). The fork's own CPU plus that
// of the children it reaped while the file ran (spawned apps, the CLI, npm start); a child
// re-parented to init and the Postgres and Redis servers are not in it. Two forks run files side by
// side, but each counts only its own process tree, so the lines add up to the run's CPU.
const clockTicks = 100;
const childrenCpuSeconds = () => {
  // /proc/self/stat: fields after the command's closing parenthesis; cutime and cstime are the 14th
  // and 15th of them (fields 16 and 17 of the whole line).
  const fields = readFileSync("/proc/self/stat", "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[13]) + Number(fields[14])) / clockTicks;
};

const log = process.env.TEST_CPU_LOG;
if (log) {
  // Vitest runs the setup files again before each test file, before importing it: the import of
  // the file (and of the app's modules, the first time in a fork) is counted.
  const own = process.cpuUsage();
  const children = childrenCpuSeconds();
  const startedAt = performance.now();
  let file = "";
  beforeAll(({}, suite) => {
    file = (suite.file?.filepath ?? suite.name).replace(`${process.cwd()}/`, "");
  });
  afterAll(() => {
    const used = process.cpuUsage(own);
    const row = {
      file,
      ownCpuS: +((used.user + used.system) / 1e6).toFixed(2),
      childrenCpuS: +(childrenCpuSeconds() - children).toFixed(2),
      wallS: +((performance.now() - startedAt) / 1000).toFixed(2),
      pid: process.pid,
    };
    appendFileSync(log, `${JSON.stringify(row)}\n`);
  });
}
