import http from "node:http";
import https from "node:https";
import { checkLiteralAddress, guardedLookup, parseHttpUrl, systemResolver, type Resolver } from "./address-check.ts";
import { toSafeFetchError } from "./classify-fetch-error.ts";
import { failedOnStaleKeptSocket, type OriginAgents } from "./origin-agents.ts";
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
  // Kept-alive connections per origin (origin-agents.ts); without, each POST connects afresh.
  agents?: OriginAgents;
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
    // `complete`: the answer was read to its end, so its connection may serve the next POST.
    const finish = (outcome: { ok: true; complete?: boolean } | { error: unknown }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (!("ok" in outcome && outcome.complete)) request?.destroy();
      if ("ok" in outcome) resolve(answer());
      else reject(toSafeFetchError(outcome.error, { host, phase }));
    };
    // Past the deadline with the status in hand, the answer counts; without it, the attempt timed out.
    const timer = setTimeout(() => {
      if (phase === "body") return finish({ ok: true });
      const reason = `timed out after ${secondsText(options.timeoutMs)}`;
      finish({ error: new SafeFetchError("timeout", `${reason} posting to ${host}`, { publicReason: reason }) });
    }, options.timeoutMs);

    const send = (url: URL, mayRetryStale: boolean) => {
      const sent = (url.protocol === "https:" ? https : http).request(url, {
        method: "POST",
        // A kept connection of this origin was checked by the lookup of the request that opened it;
        // without agents, a connection of its own, checked by this request's lookup.
        agent: options.agents ? options.agents.agentFor(url) : false,
        lookup: guardedLookup(url, options.allowedPrivateHosts, options.lookup ?? systemResolver),
        headers: { ...options.headers, "content-length": String(Buffer.byteLength(options.body)) },
      });
      request = sent;
      sent.on("error", (error) => {
        if (request !== sent) return;
        // A stale kept connection (origin-agents.ts) is sent once more on a fresh one rather than
        // counted as a failed attempt. (If it did reach the consumer's application, it sees the
        // callback twice, same webhook-id: at least once allows.)
        if (mayRetryStale && phase === "connect" && failedOnStaleKeptSocket(sent, error) && !settled) {
          try {
            return send(url, false);
          } catch (retryError) {
            return finish({ error: retryError });
          }
        }
        finish({ error });
      });
      sent.on("response", (response) => {
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
        response.on("end", () => finish({ ok: true, complete: true }));
      });
      sent.end(options.body);
    };

    try {
      const url = parseHttpUrl(rawUrl, "invalid_url");
      host = url.host;
      checkLiteralAddress(url, options.allowedPrivateHosts);
      send(url, true);
    } catch (error) {
      return finish({ error });
    }
  });
