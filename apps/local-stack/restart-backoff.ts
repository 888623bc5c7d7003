// How long the stack waits before restarting a child that exited: 1 s, doubling up to 30 s while
// the child keeps crashing, back to 1 s once a run has lasted a minute (it was healthy; this is a
// new failure, not the same crash loop).
export const restartPolicy = { firstMs: 1_000, maxMs: 30_000, healthyAfterMs: 60_000 } as const;

export const nextRestartDelay = (previousMs: number | undefined, uptimeMs: number, policy = restartPolicy): number =>
  previousMs === undefined || uptimeMs >= policy.healthyAfterMs ? policy.firstMs : Math.min(previousMs * 2, policy.maxMs);
