// What to do with a provider's refusal, in our words (each family's table: e.g.
// kling-protocol/kling-error-codes.ts).
export type ProviderErrorAction =
  | "retry" // transient: back off and try again
  | "reauthenticate" // JWT not yet valid / expired: sign a fresh one and retry
  | "pause_account" // needs a human: credentials, arrears, permissions, IP whitelist
  | "fail_task"; // the request itself is wrong or refused by policy

// The refusals some callers treat apart from their action.
export type ProviderErrorReason =
  | "requests_too_fast" // a rate limit on requests: back off (never spends the retry budget)
  | "parallel_limit" // the account's parallel-task limit is reached: back off, and it is fuller than our ledger thinks
  | "duplicate_external_id" // the provider already holds a task under this external id (an earlier create's)
  | "task_unknown" // the provider does not know the task (or the method) asked about
  | "route_missing"; // the route itself answered 404 without a code: the provider is unavailable

export type ProviderErrorClass = { action: ProviderErrorAction; reason?: ProviderErrorReason };

// A provider answer that was not a success, or a request whose outcome we could not learn.
export class ProviderError extends Error {
  // The provider surely made no task for this request: it answered with a refusal (its own error
  // code, or a 4xx of the route itself), or the request never left. A 5xx without a code may come
  // from a gateway in front of a provider that did create it, so it does not count.
  get definitelyNotCreated(): boolean {
    const { outcomeUnknown, notSent, code, httpStatus } = this.details;
    if (outcomeUnknown) return false;
    if (notSent) return true;
    return (code !== null && code !== undefined) || (httpStatus !== undefined && httpStatus < 500);
  }

  get rateLimited(): boolean {
    return this.details.reason === "requests_too_fast" || this.details.reason === "parallel_limit";
  }

  constructor(
    message: string,
    readonly details: ProviderErrorClass & {
      httpStatus?: number;
      // The provider's own error code, for the record (events, failure_code, logs); decisions use
      // `action` and `reason`.
      code?: number | null;
      // True when the request may have reached the provider (timeout, dropped connection): a retry
      // must first ask whether the task already exists, so that it is not created and paid twice.
      outcomeUnknown?: boolean;
      // The connection was refused before any request went out (the route is down).
      notSent?: boolean;
      retryAfterMs?: number;
    },
  ) {
    super(message);
    this.name = "ProviderError";
  }
}
