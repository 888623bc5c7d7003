import { randomUUID } from "node:crypto";
import type { Response } from "express";

// Kling's HTTP status for each error code (KLING.md "Errors"). The body is always
// {code, message, request_id}; clients classify on the code, the status must still match.
export const providerCodeStatus = (code: number): number => {
  if (code >= 1000 && code <= 1004) return 401;
  if (code === 1103) return 403;
  if (code >= 1100 && code <= 1102) return 429;
  if (code === 1200 || code === 1201 || code === 1300 || code === 1301) return 400;
  if (code === 1202 || code === 1203) return 404;
  if (code >= 1302 && code <= 1304) return 429;
  if (code === 5001) return 503;
  if (code === 5002) return 504;
  return 500;
};

// A refusal in the provider's terms, thrown by the simulator's domain and answered by the routes.
export class ProviderRefusal extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
    this.name = "ProviderRefusal";
  }
}

export const sendProviderError = (res: Response, code: number, message: string): void => {
  res.status(providerCodeStatus(code)).json({ code, message, request_id: randomUUID() });
};

export const sendProviderData = (res: Response, data: unknown): void => {
  res.status(200).json({ code: 0, message: "SUCCEED", request_id: randomUUID(), data });
};

// What CometAPI's wrapper answered on its documented-but-dead route (KLING.md "Status").
export const sendRouteUnavailable = (res: Response): void => {
  res.status(404).json({ code: null, message: "404" });
};

export const transientErrors = [
  { code: 1302, message: "requests are too frequent, please slow down" },
  { code: 1303, message: "parallel task limit exceeded for this account" },
  { code: 5000, message: "internal server error" },
  { code: 5001, message: "service temporarily unavailable for maintenance" },
  { code: 5002, message: "server timeout, please try again later" },
] as const;

// What the provider says for each code when create_error_code forces it (KLING.md "Errors").
const forcedErrorMessages: Record<number, string> = {
  1000: "authentication failed",
  1001: "Authorization header is empty",
  1002: "Authorization token is invalid",
  1003: "Authorization token is not yet valid",
  1004: "Authorization token has expired",
  1100: "account exception, please contact support",
  1101: "account in arrears, please recharge",
  1102: "resource pack exhausted or expired",
  1103: "no permission for this API or model",
  1200: "invalid request",
  1201: "invalid request parameters",
  1202: "invalid request method",
  1203: "the requested resource does not exist",
  1300: "refused by platform policy",
  1301: "content safety policy: the request was refused",
  1302: "requests are too frequent, please slow down",
  1303: "parallel task limit exceeded for this account",
  1304: "IP whitelist policy: this address is not allowed",
  5000: "internal server error",
  5001: "service temporarily unavailable for maintenance",
  5002: "server timeout, please try again later",
};

export const forcedErrorMessage = (code: number): string => forcedErrorMessages[code] ?? `error ${code}`;
