import { SafeFetchError, publicReasons } from "./safe-fetch-error.ts";

const tlsCode = /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|EPROTO$|HOSTNAME_MISMATCH$)/;

// Turns whatever node:http, node:net, node:tls or DNS emitted into a SafeFetchError. `phase` tells
// whether the answer's headers had arrived: a reset after them cut the body short.
export const toSafeFetchError = (error: unknown, context: { host: string; phase: "connect" | "body" }): SafeFetchError => {
  if (error instanceof SafeFetchError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  const text = error instanceof Error ? error.message : String(error);
  const detail = `fetching ${context.host}: ${typeof code === "string" ? `${code} ` : ""}${text}`;
  const make = (kind: SafeFetchError["kind"], publicReason: string) =>
    new SafeFetchError(kind, detail, { publicReason, cause: error });
  if (typeof code !== "string") return make("unreachable", publicReasons.unreachable);
  // llhttp's codes: not HTTP at all, bad header names or values, bad Content-Length, bad chunks.
  if (code.startsWith("HPE_")) return make("malformed", publicReasons.malformed);
  if (code === "ENOTFOUND" || code === "ENODATA") return make("unresolved", publicReasons.nameNotPublic);
  if (tlsCode.test(code)) return make("tls", publicReasons.tls);
  if (context.phase === "body") return make("interrupted", publicReasons.interrupted);
  // ECONNREFUSED, ECONNRESET, EHOSTUNREACH, ENETUNREACH, EAI_AGAIN, ETIMEDOUT...: the same words for
  // all of them, so that refused and silent ports look alike to a caller.
  return make("unreachable", publicReasons.unreachable);
};
