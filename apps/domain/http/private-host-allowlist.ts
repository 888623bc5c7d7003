import net from "node:net";
import { z } from "zod";

// An ALLOWED_PRIVATE_HOSTS entry: a host that may resolve to (or be) a private or loopback address.
// `port: null` (a bare `host`) allows every port on it; `host:port` or `[v6]:port` only that port.
export type AllowedPrivateHost = { host: string; port: number | null };

const bracketed = /^\[([0-9a-f:.]+)\](?::(\d{1,5}))?$/;
const named = /^([a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?)(?::(\d{1,5}))?$/;

// The URL parser's spelling of a host (IPv4 and IPv6 normalised, brackets dropped), so that an
// entry and a URL naming the same host compare equal.
const canonicalHost = (host: string): string | undefined => {
  try {
    return new URL(`http://${net.isIPv6(host) ? `[${host}]` : host}/`).hostname.replace(/^\[|\]$/g, "");
  } catch {
    return undefined;
  }
};

export const parseAllowedPrivateHost = (entry: string): AllowedPrivateHost | undefined => {
  const text = entry.trim().toLowerCase();
  let host: string | undefined;
  let port: string | undefined;
  const v6 = bracketed.exec(text);
  if (v6) [host, port] = [v6[1], v6[2]];
  else if (net.isIPv6(text)) host = text; // a bare IPv6 address: every port (write [v6]:port for one)
  else {
    const plain = named.exec(text);
    if (plain) [host, port] = [plain[1], plain[3]];
  }
  if (!host || (v6 && !net.isIPv6(host))) return undefined;
  const canonical = canonicalHost(host);
  if (!canonical) return undefined;
  if (port === undefined) return { host: canonical, port: null };
  const number = Number(port);
  return number >= 1 && number <= 65535 ? { host: canonical, port: number } : undefined;
};

// One entry of the comma list, validated when the configuration is parsed.
export const allowedPrivateHostEntry = z.string().transform((entry, ctx) => {
  const parsed = parseAllowedPrivateHost(entry);
  if (!parsed) {
    ctx.addIssue({ code: "custom", message: `"${entry}" is not a host, host:port or [ipv6]:port entry (ports 1-65535)` });
    return z.NEVER;
  }
  return parsed;
});

export const effectivePort = (url: URL): number => (url.port ? Number(url.port) : url.protocol === "https:" ? 443 : 80);

// The one rule for "may this URL's host:port be private": the fetcher, intake's callback_url check
// and outbound webhooks all ask here.
export const isPrivateHostAllowed = (url: URL | string, allowed: readonly AllowedPrivateHost[]): boolean => {
  let parsed: URL;
  try {
    parsed = typeof url === "string" ? new URL(url) : url;
  } catch {
    return false;
  }
  const host = parsed.hostname.replace(/^\[|\]$/g, "");
  const port = effectivePort(parsed);
  return allowed.some((entry) => entry.host === host && (entry.port === null || entry.port === port));
};
