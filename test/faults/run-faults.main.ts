import { tmpdir } from "node:os";
import path from "node:path";
import { z } from "zod";
import { ensureBuilt } from "../../ops/build/build-apps.mjs";
import type { FaultCount } from "./fault-accounting.ts";
import { faultNames } from "./fault-names.ts";

// `npm run faults`: the whole fault matrix, one line per fault on stdout and a total line; what
// explains each lost or duplicated task, process crashes and progress go to stderr. Exits 1 when
// any task was lost or duplicated at the provider or a fault could not be run at all.
//
//   fault=<name> tasks=<n> succeeded=<s> failed_as_expected=<f> lost=<l> duplicated_at_provider=<d> max_recovery_s=<r>
//
// succeeded: ended succeeded with all its images stored. failed_as_expected: failed with a class the
// fault explains (each fault's description in fault-catalog.ts says which). lost: everything else
// (not ended by the deadline, failed unexplained, succeeded on bad input, changed by a forgery).
// duplicated_at_provider: provider tasks beyond one per task, second creates of one
// external_task_id, provider tasks that are none of ours. max_recovery_s: from the heal to the last
// task's end (the whole wait when a task never ended). Env: FAULTS_TASKS (20), FAULTS_DEADLINE_S
// (60, after each heal), FAULTS_ONLY=name,name, FAULTS_LOG_DIR (the API's and worker's logs).

const names = faultNames;
const envSchema = z.object({
  FAULTS_TASKS: z.coerce.number().int().min(1).max(500).default(20),
  // After the heal, how long every task has to reach an end.
  FAULTS_DEADLINE_S: z.coerce.number().positive().default(60),
  FAULTS_ONLY: z
    .string()
    .transform((v) => v.split(",").map((s) => s.trim()).filter(Boolean))
    .pipe(z.array(z.enum(names, { error: `must name faults among: ${names.join(", ")}` })))
    .optional(),
  FAULTS_LOG_DIR: z.string().optional(),
  TEST_POSTGRES_URL: z.string().default("postgresql://postgres@127.0.0.1:5432"),
});

const parsed = envSchema.safeParse(Object.fromEntries(Object.entries(process.env).filter(([, v]) => v !== "")));
if (!parsed.success) {
  console.error(`faults: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  process.exit(2);
}
const env = parsed.data;
// Loaded once the settings are known good: the catalog and the runner import the apps.
const [{ prepareDatabase }, { dropDatabases }, { makeImage }, { formatFaultLine, formatTotalLine }, { faultCatalog }, { runFault }] = await Promise.all([
  import("../../apps/domain/db/prepare-database.ts"),
  import("../support/databases.ts"),
  import("../support/images.ts"),
  import("./fault-accounting.ts"),
  import("./fault-catalog.ts"),
  import("./fault-run.ts"),
]);
// An interrupted run still takes its child processes down with it (their exit hooks).
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => process.exit(130));

const faults = env.FAULTS_ONLY ? faultCatalog.filter((f) => env.FAULTS_ONLY!.includes(f.name)) : faultCatalog;
const logDir = env.FAULTS_LOG_DIR ?? path.join(tmpdir(), `kling-faults-${new Date().toISOString().replace(/[:.]/g, "-")}`);
const say = (line: string) => process.stderr.write(`${line}\n`);

const templateName = `kling_faults_${process.pid}_${Date.now().toString(36)}`;
const templateDatabaseUrl = `${env.TEST_POSTGRES_URL}/${templateName}`;
let broken = false;
const counts: FaultCount[] = [];
const started = Date.now();
try {
  say(`faults: ${faults.length} faults, ${env.FAULTS_TASKS} tasks each, deadline ${env.FAULTS_DEADLINE_S} s after each heal; logs in ${logDir}`);
  await prepareDatabase(templateDatabaseUrl);
  // The processes it spawns run from the build (ops/build), made here when a source changed.
  await ensureBuilt();
  const sourceImage = await makeImage(400, 400);
  for (const fault of faults) {
    const faultStarted = Date.now();
    try {
      const result = await runFault(fault, {
        templateDatabaseUrl,
        tasks: env.FAULTS_TASKS,
        deadlineS: env.FAULTS_DEADLINE_S,
        logDir,
        sourceImage,
        progress: (line) => say(`  ${line}`),
      });
      counts.push(result);
      process.stdout.write(`${formatFaultLine(result)}\n`);
      for (const line of [...result.crashes, ...result.notes]) say(`  ${fault.name}: ${line}`);
      say(`  ${fault.name}: ${((Date.now() - faultStarted) / 1000).toFixed(0)} s; logs in ${result.logDir}`);
    } catch (error) {
      broken = true;
      process.stdout.write(`fault=${fault.name} broken=${JSON.stringify((error as Error).message.split("\n")[0])}\n`);
      say(`  ${fault.name}: the run broke: ${(error as Error).stack ?? error}`);
    }
  }
} catch (error) {
  broken = true;
  say(`faults: the run broke: ${(error as Error).stack ?? error}`);
} finally {
  await dropDatabases(templateDatabaseUrl, templateName).catch((error: Error) => say(`faults: template database not dropped: ${error.message}`));
}
process.stdout.write(`${formatTotalLine(counts)}\n`);
say(`faults: ${((Date.now() - started) / 1000).toFixed(0)} s in all`);
const failed = broken || counts.some((c) => c.lost > 0 || c.duplicatedAtProvider > 0);
process.exit(failed ? 1 : 0);
