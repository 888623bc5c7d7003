// What to do with a provider error, by its `code` (KLING.md "Errors"). Classify on the code, never on
// the HTTP status alone: 429 carries both retryable and human-needed codes.
export type ProviderErrorAction =
  | "retry" // transient: back off and try again
  | "reauthenticate" // JWT not yet valid / expired: sign a fresh one and retry
  | "pause_account" // needs a human: credentials, arrears, permissions, IP whitelist
  | "fail_task"; // the request itself is wrong or refused by policy

export const providerErrorAction = (code: number | null | undefined, httpStatus: number): ProviderErrorAction => {
  if (code === 1003 || code === 1004) return "reauthenticate";
  if (code === 1302 || code === 1303) return "retry";
  if (code !== null && code !== undefined && code >= 5000 && code <= 5002) return "retry";
  if (code !== null && code !== undefined && code >= 1000 && code <= 1002) return "pause_account";
  if (code === 1100 || code === 1101 || code === 1102 || code === 1103 || code === 1304) return "pause_account";
  if (code === 1200 || code === 1201 || code === 1202 || code === 1203 || code === 1300 || code === 1301) return "fail_task";
  // No known code (a wrapper's own error, an HTML page, a proxy): fall back on the HTTP status, as
  // CometAPI advises (retry 429 and 5xx, not 400/401/403).
  if (httpStatus === 429 || httpStatus >= 500) return "retry";
  if (httpStatus === 401 || httpStatus === 403) return "pause_account";
  // A 404 on the route itself (CometAPI answered {"code": null, "message": "404"} in 2026-03) is the
  // provider being unavailable, not the task being wrong.
  if (httpStatus === 404 && (code === null || code === undefined)) return "retry";
  return "fail_task";
};
