import http from "node:http";
import https from "node:https";
import { checkLiteralAddress, parseHttpUrl, systemResolver, type Resolver } from "./address-check.ts";
import type { OriginAgents } from "./origin-agents.ts";
import type { AllowedPrivateHost } from "./private-host-allowlist.ts";
import { fetchOnce, type FetchedBody } from "./fetch-once.ts";
import { SafeFetchError, publicReasons, secondsText } from "./safe-fetch-error.ts";

export { SafeFetchError } from "./safe-fetch-error.ts";
export { checkCallbackDestination, checkUrlAddress, literalAddressRefusal } from "./address-check.ts";
export { isPrivateHostAllowed, type AllowedPrivateHost } from "./private-host-allowlist.ts";

export const SAFE_FETCH_DEFAULTS = {
  // No byte for this long (connecting, waiting for headers, or between body chunks) ends the try.
  timeoutMs: 10_000,
  // The whole download, redirects and body included: a server trickling a byte a second ends here.
  totalTimeoutMs: 30_000,
  maxRedirects: 5,
} as const;

export type SafeFetchOptions = {
  maxBytes: number;
  timeoutMs?: number;
  totalTimeoutMs?: number;
  // Host or host:port entries that may be private or loopback (ALLOWED_PRIVATE_HOSTS).
  allowedPrivateHosts: readonly AllowedPrivateHost[];
  maxRedirects?: number;
  // Name resolution; the system's dns.lookup unless a test injects its own.
  lookup?: Resolver;
  // Kept-alive connections per origin (origin-agents.ts), for callers that download from the same
  // hosts again and again; without, each download connects afresh. A caller's own: a kept
  // connection passed that caller's address check.
  agents?: OriginAgents;
};

export type SafeFetchResult = FetchedBody & { finalUrl: string };

const redirectStatuses = new Set([301, 302, 303, 307, 308]);

// Fetches an untrusted URL: http(s) only, public addresses only (unless host:port is allowed), a
// size cap, an idle and a total deadline, and every redirect target checked again. Never throws
// anything but SafeFetchError, and nothing a remote server sends can throw outside the promise.
export const safeFetch = async (rawUrl: string, options: SafeFetchOptions): Promise<SafeFetchResult> => {
  const totalMs = options.totalTimeoutMs ?? SAFE_FETCH_DEFAULTS.totalTimeoutMs;
  const maxRedirects = options.maxRedirects ?? SAFE_FETCH_DEFAULTS.maxRedirects;
  const deadline = new AbortController();
  const timer = setTimeout(() => {
    const reason = `timed out after ${secondsText(totalMs)}`;
    const detail = `${reason} (total deadline) fetching ${rawUrl.slice(0, 200)}`;
    deadline.abort(new SafeFetchError("timeout", detail, { publicReason: reason }));
  }, totalMs);
  try {
    let url = parseHttpUrl(rawUrl, "invalid_url");
    const seen = new Set([url.href]);
    for (let redirects = 0; ; redirects++) {
      checkLiteralAddress(url, options.allowedPrivateHosts);
      const answer = await fetchOnce(url, {
        client: url.protocol === "https:" ? https : http,
        maxBytes: options.maxBytes,
        idleMs: options.timeoutMs ?? SAFE_FETCH_DEFAULTS.timeoutMs,
        allowedPrivateHosts: options.allowedPrivateHosts,
        resolver: options.lookup ?? systemResolver,
        signal: deadline.signal,
        isRedirect: (status) => redirectStatuses.has(status),
        ...(options.agents ? { agents: options.agents } : {}),
      });
      if (answer.kind === "body") return { ...answer.body, finalUrl: url.toString() };
      const badRedirect = (detail: string, publicReason: string = publicReasons.badRedirect) =>
        new SafeFetchError("bad_redirect", `${detail} (from ${url.host})`, { publicReason });
      if (!answer.location) {
        throw badRedirect(`HTTP ${answer.status} without a Location`, "the server answered a redirect without a target");
      }
      const next = parseHttpUrl(answer.location, "bad_redirect", url);
      if (seen.has(next.href)) throw badRedirect(`redirect loop at ${next.href}`, "the server's redirects loop");
      if (redirects >= maxRedirects) throw badRedirect(`more than ${maxRedirects} redirects`, `more than ${maxRedirects} redirects`);
      seen.add(next.href);
      url = next;
    }
  } finally {
    clearTimeout(timer);
  }
};
