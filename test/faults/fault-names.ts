// The fault matrix's faults by name, in the order `npm run faults` runs them. fault-catalog.ts
// defines each (and checks it has these, in this order); `npm run faults` checks FAULTS_ONLY
// against them before it loads the catalog, which imports the apps, the simulator and bullmq
// (seconds of CPU a mistyped name would spend for nothing).
export const faultNames = [
  "worker_sigkill_submitting",
  "worker_sigkill_archiving",
  "api_sigkill",
  "redis_stopped",
  "redis_restarted_empty",
  "redis_hung",
  "postgres_refused",
  "postgres_hung",
  "provider_route_404",
  "provider_5xx",
  "provider_slow",
  "callbacks_lost",
  "callbacks_duplicated",
  "callbacks_forged",
  "malformed_remote_answers",
] as const;

export type FaultName = (typeof faultNames)[number];
