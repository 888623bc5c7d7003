import http from "node:http";
import https from "node:https";
import { checkLiteralAddress, guardedLookup, parseHttpUrl, systemResolver, type Resolver } from "./address-check.ts";
import { toSafeFetchError } from "./classify-fetch-error.ts";
import type { AllowedPrivateHost } from "./private-host-allowlist.ts";
import { SafeFetchError, secondsText } from "./safe-fetch-error.ts";

export type SafePostOptions = {
  body: string;
  headers: Record<string, string>;
  // Connect, send and the answer's status line and headers within this time.
  timeoutMs: number;
  // Of the answer's body, at most this many bytes are read (and kept); the rest is never waited for.
  maxResponseBytes: number;
  allowedPrivateHosts: readonly AllowedPrivateHost[];
  lookup?: Resolver;
};

export type SafePostAnswer = { status: number; body: string; location: string | undefined };

// One POST to an untrusted URL (outbound callbacks), with the rules of safeFetch: http(s) only, the
// address checked when connecting (a name resolving to a private address is refused unless
// ALLOWED_PRIVATE_HOSTS names it), one deadline. Any HTTP status is an answer, redirects included:
// they are never followed. Rejects only with a SafeFetchError.
export const safePost = (rawUrl: string, options: SafePostOptions): Promise<SafePostAnswer> =>
  new Promise<SafePostAnswer>((resolve, reject) => {
    let settled = false;
    let phase: "connect" | "body" = "connect";
    let request: http.ClientRequest | undefined;
    let host = rawUrl.slice(0, 200);
    const status = { code: 0, location: undefined as string | undefined };
    const chunks: Buffer[] = [];
    let size = 0;
    const answer = (): SafePostAnswer => ({ status: status.code, body: Buffer.concat(chunks).toString("utf8"), location: status.location });
    const finish = (outcome: { ok: true } | { error: unknown }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      request?.destroy();
      if ("ok" in outcome) resolve(answer());
      else reject(toSafeFetchError(outcome.error, { host, phase }));
    };
    // Past the deadline with the status in hand, the answer counts; without it, the attempt timed out.
    const timer = setTimeout(() => {
      if (phase === "body") return finish({ ok: true });
      const reason = `timed out after ${secondsText(options.timeoutMs)}`;
      finish({ error: new SafeFetchError("timeout", `${reason} posting to ${host}`, { publicReason: reason }) });
    }, options.timeoutMs);

    try {
      const url = parseHttpUrl(rawUrl, "invalid_url");
      host = url.host;
      checkLiteralAddress(url, options.allowedPrivateHosts);
      request = (url.protocol === "https:" ? https : http).request(url, {
        method: "POST",
        // A connection of its own: its address was checked by this request's lookup.
        agent: false,
        lookup: guardedLookup(url, options.allowedPrivateHosts, options.lookup ?? systemResolver),
        headers: { ...options.headers, "content-length": String(Buffer.byteLength(options.body)) },
      });
    } catch (error) {
      return finish({ error });
    }
    request.on("error", (error) => finish({ error }));
    request.on("response", (response) => {
      phase = "body";
      status.code = response.statusCode ?? 0;
      status.location = response.headers.location;
      response.on("error", () => finish({ ok: true }));
      response.on("data", (chunk: Buffer) => {
        const room = options.maxResponseBytes - size;
        if (room > 0) chunks.push(chunk.subarray(0, room));
        size += chunk.length;
        if (size >= options.maxResponseBytes) finish({ ok: true });
      });
      response.on("end", () => finish({ ok: true }));
    });
    request.end(options.body);
  });
