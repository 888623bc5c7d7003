// Exponential backoff with full jitter, so that many tasks refused at once do not return at once.
export const backoffWithJitter = (attempt: number, baseMs: number, maxMs: number, random = Math.random): number => {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
};

// Polling slows down as a task runs over (`lateMs`: past its expected end, or its age when no run
// time is known yet): a task just past its end is checked soon, a slow one is not hammered.
export const nextPollDelayMs = (lateMs: number, graceMs: number, maxMs: number): number =>
  Math.min(maxMs, Math.max(graceMs, Math.round(lateMs / 4)));

// Failures that may pass when the task is run again (a batch's retry re-runs only these). Not:
// a bad image, a request the provider refused, more images than the account has slots, a task the
// provider itself ran and failed, or one that timed out at the provider (the provider holds a task
// under its external_task_id, our task id, and refuses a second create with it). `archive_failed` goes back to archiving: the provider still holds the results.
export const retryableFailureClasses = ["retries_exhausted", "provider_lost", "worker_crashed", "archive_failed"] as const;

export const mayPassOnRetry = (failureClass: string | null): boolean =>
  failureClass !== null && (retryableFailureClasses as readonly string[]).includes(failureClass);
