import dns from "node:dns";
import http from "node:http";
import https from "node:https";
import net from "node:net";

export class SafeFetchError extends Error {
  constructor(message: string, readonly kind: "blocked" | "too_large" | "timeout" | "http_status" | "network") {
    super(message);
    this.name = "SafeFetchError";
  }
}

export type SafeFetchOptions = {
  maxBytes: number;
  timeoutMs: number;
  // Hostnames (as written in the URL) allowed to resolve to private or loopback addresses.
  allowedPrivateHosts: readonly string[];
  maxRedirects?: number;
};

const blocked = new net.BlockList();
for (const [net4, prefix] of [
  ["0.0.0.0", 8], ["10.0.0.0", 8], ["100.64.0.0", 10], ["127.0.0.0", 8], ["169.254.0.0", 16],
  ["172.16.0.0", 12], ["192.0.0.0", 24], ["192.168.0.0", 16], ["198.18.0.0", 15], ["224.0.0.0", 3],
] as const) blocked.addSubnet(net4, prefix, "ipv4");
for (const [net6, prefix] of [["::", 128], ["::1", 128], ["fc00::", 7], ["fe80::", 10], ["ff00::", 8]] as const)
  blocked.addSubnet(net6, prefix, "ipv6");

const isBlockedAddress = (address: string): boolean => {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped?.[1]) return blocked.check(mapped[1], "ipv4");
  const family = net.isIP(address);
  if (family === 0) return true;
  return blocked.check(address, family === 4 ? "ipv4" : "ipv6");
};

// The check runs on the address actually connected to (inside the socket's DNS lookup), so a name
// that resolves differently on a second lookup (DNS rebinding) cannot slip past it.
const guardedLookup =
  (allowPrivate: boolean): net.LookupFunction =>
  (hostname, options, callback) => {
    dns.lookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) return callback(error, "", 0);
      const list = addresses as dns.LookupAddress[];
      const bad = list.find((a) => isBlockedAddress(a.address));
      if (bad && !allowPrivate) {
        return callback(new SafeFetchError(`refused: ${hostname} resolves to a private address`, "blocked"), "", 0);
      }
      if ((options as dns.LookupOptions).all) return (callback as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, list);
      const first = list[0];
      if (!first) return callback(new SafeFetchError(`no address for ${hostname}`, "network"), "", 0);
      callback(null, first.address, first.family);
    });
  };

export type SafeFetchResult = { body: Buffer; contentType: string | undefined; finalUrl: string };

// Fetches an untrusted URL: http(s) only, no private addresses unless allowed by name, a size cap,
// one overall timeout, and every redirect target checked again.
export const safeFetch = async (rawUrl: string, options: SafeFetchOptions, redirects = 0): Promise<SafeFetchResult> => {
  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch {
    throw new SafeFetchError(`not a valid URL: ${rawUrl}`, "blocked");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new SafeFetchError("only http and https URLs are fetched", "blocked");
  const hostname = url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  const allowPrivate = options.allowedPrivateHosts.includes(hostname);
  if (net.isIP(hostname) && isBlockedAddress(hostname) && !allowPrivate) {
    throw new SafeFetchError(`refused: ${hostname} is a private or loopback address`, "blocked");
  }
  const client = url.protocol === "https:" ? https : http;
  return new Promise<SafeFetchResult>((resolve, reject) => {
    const request = client.get(url, { lookup: guardedLookup(allowPrivate), timeout: options.timeoutMs }, (response) => {
      const status = response.statusCode ?? 0;
      if (status >= 300 && status < 400 && response.headers.location) {
        response.resume();
        clearTimeout(deadline);
        if (redirects >= (options.maxRedirects ?? 3)) return reject(new SafeFetchError("too many redirects", "http_status"));
        const next = new URL(response.headers.location, url).toString();
        return resolve(safeFetch(next, options, redirects + 1));
      }
      if (status !== 200) {
        response.resume();
        clearTimeout(deadline);
        return reject(new SafeFetchError(`HTTP ${status} from ${url.host}`, "http_status"));
      }
      const declared = Number(response.headers["content-length"]);
      if (Number.isFinite(declared) && declared > options.maxBytes) {
        request.destroy();
        clearTimeout(deadline);
        return reject(new SafeFetchError(`image is ${declared} bytes; the limit is ${options.maxBytes} bytes`, "too_large"));
      }
      const chunks: Buffer[] = [];
      let size = 0;
      response.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > options.maxBytes) {
          request.destroy(new SafeFetchError(`image exceeds the limit of ${options.maxBytes} bytes`, "too_large"));
          return;
        }
        chunks.push(chunk);
      });
      response.on("end", () => {
        clearTimeout(deadline);
        resolve({ body: Buffer.concat(chunks), contentType: response.headers["content-type"], finalUrl: url.toString() });
      });
      response.on("error", (error) => {
        clearTimeout(deadline);
        reject(error instanceof SafeFetchError ? error : new SafeFetchError(error.message, "network"));
      });
    });
    const deadline = setTimeout(
      () => request.destroy(new SafeFetchError(`timed out after ${options.timeoutMs} ms fetching ${url.host}`, "timeout")),
      options.timeoutMs,
    );
    request.on("timeout", () => request.destroy(new SafeFetchError(`timed out fetching ${url.host}`, "timeout")));
    request.on("error", (error) => {
      clearTimeout(deadline);
      reject(error instanceof SafeFetchError ? error : new SafeFetchError(`could not fetch ${url.host}: ${error.message}`, "network"));
    });
  });
};
