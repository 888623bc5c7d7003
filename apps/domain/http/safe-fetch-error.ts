export type SafeFetchErrorKind =
  | "invalid_url" // the URL itself: unparseable, or not http(s)
  | "blocked" // not a public address, and not an allowed private host:port
  | "unresolved" // the name does not exist (ENOTFOUND)
  | "unreachable" // connection refused or reset, no route, temporary DNS failure
  | "interrupted" // the connection ended before the body did
  | "timeout" // idle or total deadline
  | "http_status" // an answer other than 200 or a redirect
  | "bad_redirect" // a redirect without a usable Location, a loop, too many
  | "too_large"
  | "malformed" // not HTTP, bad headers or framing, an encoding we did not ask for
  | "tls"; // certificate or handshake refused

const retryableKinds = new Set<SafeFetchErrorKind>(["unreachable", "interrupted", "timeout"]);

// 408, 425 and 429 say "not now", as do 5xx; every other 4xx will be the same on the next try.
export const isRetryableStatus = (status: number): boolean =>
  (status >= 500 && status <= 599) || status === 408 || status === 425 || status === 429;

export type SafeFetchErrorDetails = {
  // Safe to show the caller: never a resolved address, an internal name or a port probe result.
  publicReason: string;
  status?: number;
  retryAfterMs?: number;
  cause?: unknown;
};

// Every way a fetch can fail. `message` has the detail for logs (hosts, resolved addresses, error
// codes); `publicReason` is what a caller may see; `retryable` says whether a later try may pass.
export class SafeFetchError extends Error {
  readonly publicReason: string;
  readonly retryable: boolean;
  readonly status: number | undefined;
  readonly retryAfterMs: number | undefined;

  constructor(
    readonly kind: SafeFetchErrorKind,
    message: string,
    details: SafeFetchErrorDetails,
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = "SafeFetchError";
    this.publicReason = details.publicReason;
    this.status = details.status;
    this.retryAfterMs = details.retryAfterMs;
    this.retryable = kind === "http_status" ? isRetryableStatus(details.status ?? 0) : retryableKinds.has(kind);
  }
}

export const publicReasons = {
  notPublic: "the URL must point to a public http(s) address",
  // The same words whether the name does not exist or resolves to a private address: a caller must
  // not learn which internal names exist.
  nameNotPublic: "the host name does not resolve to a public address",
  unreachable: "the host could not be reached",
  interrupted: "the connection was cut before the answer was complete",
  malformed: "the server's answer was malformed",
  tls: "the server's TLS certificate or handshake was refused",
  badRedirect: "the server redirected to an invalid URL",
  invalidUrl: "not a valid http(s) URL",
} as const;

const MB = 1024 * 1024;
export const sizeLimitText = (maxBytes: number): string =>
  maxBytes % MB === 0 ? `${maxBytes / MB} MB` : `${maxBytes} bytes`;
export const secondsText = (ms: number): string => `${Number((ms / 1000).toFixed(1))} s`;

// Retry-After is seconds or an HTTP date. Capped, so that a caller's own server cannot park a task
// for hours with one header.
export const RETRY_AFTER_CAP_MS = 5 * 60_000;
export const parseRetryAfter = (value: string | undefined, now = Date.now()): number | undefined => {
  if (!value) return undefined;
  const text = value.trim();
  const ms = /^\d+$/.test(text) ? Number(text) * 1000 : Date.parse(text) - now;
  if (!Number.isFinite(ms)) return undefined;
  return Math.min(Math.max(ms, 0), RETRY_AFTER_CAP_MS);
};
