import dns from "node:dns";
import net from "node:net";
import { isPublicAddress } from "./address-policy.ts";
import { toSafeFetchError } from "./classify-fetch-error.ts";
import { isPrivateHostAllowed, type AllowedPrivateHost } from "./private-host-allowlist.ts";
import { SafeFetchError, publicReasons } from "./safe-fetch-error.ts";

export type ResolvedAddress = { address: string; family: number };
// Name resolution, injectable for tests (a name that resolves to ::7f00:1) and custom DNS.
export type Resolver = (hostname: string) => Promise<readonly ResolvedAddress[]>;

export const systemResolver: Resolver = (hostname) => dns.promises.lookup(hostname, { all: true, verbatim: true });

export const urlHostname = (url: URL): string => url.hostname.replace(/^\[|\]$/g, "");

// Parses a URL and accepts http(s) only. `kind` says whose URL it was: the caller's, or a redirect's.
export const parseHttpUrl = (raw: string, kind: "invalid_url" | "bad_redirect", base?: URL): URL => {
  const publicReason = kind === "invalid_url" ? publicReasons.invalidUrl : publicReasons.badRedirect;
  let url: URL;
  try {
    url = new URL(raw, base);
  } catch (error) {
    // Detail goes to logs: a malformed callback_url may still hold a credential, so none of it is quoted.
    throw new SafeFetchError(kind, `not a valid URL (${raw.length} characters)`, { publicReason, cause: error });
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new SafeFetchError(kind, `not an http(s) URL: ${url.protocol}`, { publicReason });
  }
  return url;
};

// A literal IP in a URL never reaches a lookup: it is checked here. Whoever wrote the URL (the
// caller, or the server that redirected) wrote the address, so the reason may name it.
export const checkLiteralAddress = (url: URL, allowed: readonly AllowedPrivateHost[]): void => {
  const host = urlHostname(url);
  if (net.isIP(host) === 0 || isPublicAddress(host) || isPrivateHostAllowed(url, allowed)) return;
  throw new SafeFetchError("blocked", `refused: ${url.host} is not a public address`, {
    publicReason: `${publicReasons.notPublic} (${host} is not public)`,
  });
};

// Resolves a name and refuses it if any of its addresses is not public (a name with one private
// address among public ones is refused as a whole: which one is used is not ours to choose).
const resolvePublic = async (hostname: string, resolver: Resolver): Promise<readonly ResolvedAddress[]> => {
  let addresses: readonly ResolvedAddress[];
  try {
    addresses = await resolver(hostname);
  } catch (error) {
    throw toSafeFetchError(error, { host: hostname, phase: "connect" });
  }
  if (addresses.length === 0) {
    throw new SafeFetchError("unresolved", `${hostname} has no address`, { publicReason: publicReasons.nameNotPublic });
  }
  const refused = addresses.filter((a) => !isPublicAddress(a.address));
  if (refused.length > 0) {
    throw new SafeFetchError("blocked", `refused: ${hostname} resolves to ${refused.map((a) => a.address).join(", ")}`, {
      publicReason: publicReasons.nameNotPublic,
    });
  }
  return addresses;
};

// The socket's own lookup: the check runs on the addresses actually connected to, so a name that
// answers differently on a second lookup (DNS rebinding) cannot slip past it.
export const guardedLookup =
  (url: URL, allowed: readonly AllowedPrivateHost[], resolver: Resolver): net.LookupFunction =>
  (hostname, options, callback) => {
    // async: a resolver that throws synchronously still ends up in the callback, not out of net.
    const resolve = async () =>
      isPrivateHostAllowed(url, allowed) ? await resolver(hostname) : await resolvePublic(hostname, resolver);
    resolve().then(
      (found) => {
        const family = options.family === 4 || options.family === 6 ? options.family : 0;
        const list = found.filter((a) => net.isIP(a.address) !== 0 && (family === 0 || a.family === family));
        const first = list[0];
        if (!first) {
          const detail = `${hostname} has no address of family ${family}`;
          return callback(new SafeFetchError("unresolved", detail, { publicReason: publicReasons.nameNotPublic }), "", 0);
        }
        if (options.all) return callback(null, list);
        callback(null, first.address, first.family);
      },
      (error: unknown) => callback(toSafeFetchError(error, { host: hostname, phase: "connect" }), "", 0),
    );
  };

// Intake's rule for a callback_url: what is wrong in itself is refused (not http(s), malformed, a
// literal address that is not public, a name that resolves to one), but a name that does not
// resolve right now is accepted: DNS is checked again when a delivery connects, and a name that
// fails then is a failed attempt, retried on the delivery schedule.
export const checkCallbackDestination = async (
  rawUrl: string,
  allowedPrivateHosts: readonly AllowedPrivateHost[],
  resolver: Resolver = systemResolver,
): Promise<void> => {
  try {
    await checkUrlAddress(rawUrl, allowedPrivateHosts, resolver);
  } catch (error) {
    if (error instanceof SafeFetchError && error.kind === "unresolved") return;
    throw error;
  }
};

// An image URL at intake: only what needs no DNS (the download checks names at connect time).
// Returns the public reason when the URL names a literal address that is not public.
export const literalAddressRefusal = (rawUrl: string, allowedPrivateHosts: readonly AllowedPrivateHost[]): string | undefined => {
  try {
    checkLiteralAddress(parseHttpUrl(rawUrl, "invalid_url"), allowedPrivateHosts);
    return undefined;
  } catch (error) {
    if (error instanceof SafeFetchError) return error.publicReason;
    throw error;
  }
};

// The same rule without fetching (intake's callback_url, outbound webhooks): resolves when the URL
// may be fetched, rejects with the SafeFetchError a fetch would have met. Literal IPs skip DNS.
export const checkUrlAddress = async (
  rawUrl: string | URL,
  allowedPrivateHosts: readonly AllowedPrivateHost[],
  resolver: Resolver = systemResolver,
): Promise<void> => {
  const url = parseHttpUrl(String(rawUrl), "invalid_url");
  const host = urlHostname(url);
  if (net.isIP(host) !== 0) return checkLiteralAddress(url, allowedPrivateHosts);
  if (isPrivateHostAllowed(url, allowedPrivateHosts)) return;
  await resolvePublic(host, resolver);
};
