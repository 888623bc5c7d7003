// Which test file runs in which tier (vitest.config.ts turns these into projects). A file in no
// list is an integration test: real Postgres, Redis and the simulator over HTTP, in one process.
//
// unit: pure rules. No Postgres, Redis or listening server; the unit project has no global setup,
// so a file here that asks for a database (inject("templateDatabaseUrl")) fails at once.
export const unitFiles = [
  "test/account/account-tally.test.ts",
  "test/batch/csv-batch-body.test.ts",
  "test/batch/code-points.test.ts",
  "test/batch/json-batch-body.test.ts",
  "test/cli/cli-hints.test.ts",
  "test/config/app-config.test.ts",
  "test/config/provider-routes-config.test.ts",
  "test/http/private-host-allowlist.test.ts",
  "test/process/env-example.test.ts",
  "test/process/ready-banner.test.ts",
  "test/process/restart-backoff.test.ts",
  "test/process/test-tiers.test.ts",
  "test/provider/provider-adapter-table.test.ts",
  "test/provider/provider-image.test.ts",
  "test/storage/storage-config.test.ts",
  "test/webhooks/retry-schedule.test.ts",
  "test/webhooks/standard-webhooks.test.ts",
  "test/webhooks/webhook-secret-config.test.ts",
  "test/worker/image-header.test.ts",
];

// e2e: the programs as they are run: spawned API/worker/stack processes (npm start, rolling
// restarts, crashes), the CLI, the browser, the fault matrix and the fleet. What they assert runs in
// the spawned processes, so the files share their vitest worker's loaded modules, as integration
// files do; a file that changes process-wide state of the test process itself is listed in
// ownProcessFiles too.
export const e2eFiles = [
  "test/api/metrics.test.ts",
  "test/api/tracing.test.ts",
  "test/browser/dashboard.test.ts",
  "test/e2e/batch-control.test.ts",
  "test/e2e/batch-json-memory.test.ts",
  "test/e2e/cli-interrupt.test.ts",
  "test/e2e/cli.test.ts",
  "test/e2e/fault-matrix.test.ts",
  "test/e2e/fleet-pgbouncer.test.ts",
  "test/e2e/hostile-http-budget.test.ts",
  "test/e2e/live-progress.test.ts",
  "test/e2e/outbound-webhooks-receiver.test.ts",
  "test/e2e/outbound-webhooks-recovery.test.ts",
  "test/e2e/poison-job.test.ts",
  "test/e2e/redis-cluster.test.ts",
  "test/e2e/worker-crash.test.ts",
  "test/logging/log-format.test.ts",
  "test/logging/request-log.test.ts",
  "test/process/listen-host.test.ts",
  "test/process/npm-start-ports.test.ts",
  "test/process/npm-start.test.ts",
  "test/process/rolling-restart.test.ts",
  "test/process/run-service.test.ts",
  "test/process/stack-identity.test.ts",
  "test/process/worker-public-url.test.ts",
  "test/process/worker-readiness.test.ts",
];

// e2e files that get a fresh test process each: they change process-wide state of their own process
// (tracing sets OTEL_* variables and registers OpenTelemetry's global tracer provider).
export const ownProcessFiles = ["test/api/tracing.test.ts"];
