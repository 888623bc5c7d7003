import type { ProviderAnswer } from "../provider-adapter.ts";
import type { ProviderErrorAction, ProviderErrorClass, ProviderErrorReason } from "../provider-error.ts";

// Kling's error codes (KLING.md "Errors") in our words. Classify on the code, never on the HTTP
// status alone: 429 carries both retryable and human-needed codes.
const byCode = new Map<number, ProviderErrorClass>();
const put = (codes: number[], action: ProviderErrorAction, reason?: ProviderErrorReason) => {
  for (const code of codes) byCode.set(code, reason ? { action, reason } : { action });
};
put([1000, 1001, 1002], "pause_account"); // authentication failed / empty / invalid
put([1003, 1004], "reauthenticate"); // token not yet valid / expired: re-sign the JWT
put([1100, 1101, 1102, 1103, 1304], "pause_account"); // account, arrears, resource pack, permission, IP whitelist
put([1200, 1201, 1300, 1301], "fail_task"); // invalid request / parameter, platform / content policy
put([1202, 1203], "fail_task", "task_unknown"); // bad method / resource does not exist
put([1302], "retry", "requests_too_fast");
put([1303], "retry", "parallel_limit");
put([5000, 5001, 5002], "retry"); // server error / maintenance / timeout

// The codes KLING.md documents (the table test walks them; the simulator answers each on demand).
export const klingErrorCodes = [...byCode.keys()];

export const classifyKlingError = ({ httpStatus, code, message }: ProviderAnswer): ProviderErrorClass => {
  // external_task_id is unique per account: the provider already holds a task under our id.
  if (code === 1201 && /external_task_id/i.test(message) && /duplicate/i.test(message)) return { action: "fail_task", reason: "duplicate_external_id" };
  const known = code === null || code === undefined ? undefined : byCode.get(code);
  if (known) return known;
  // No known code (a wrapper's own error, an HTML page, a proxy): fall back on the HTTP status, as
  // CometAPI advises (retry 429 and 5xx, not 400/401/403).
  if (httpStatus === 429 || httpStatus >= 500) return { action: "retry" };
  if (httpStatus === 401 || httpStatus === 403) return { action: "pause_account" };
  // A 404 on the route itself (CometAPI answered {"code": null, "message": "404"} in 2026-03) is the
  // provider being unavailable, not the task being wrong.
  if (httpStatus === 404 && (code === null || code === undefined)) return { action: "retry", reason: "route_missing" };
  return { action: "fail_task" };
};
