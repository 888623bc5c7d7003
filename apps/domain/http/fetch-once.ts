import type http from "node:http";
import type https from "node:https";
import { guardedLookup, type Resolver } from "./address-check.ts";
import { toSafeFetchError } from "./classify-fetch-error.ts";
import { failedOnStaleKeptSocket, type OriginAgents } from "./origin-agents.ts";
import type { AllowedPrivateHost } from "./private-host-allowlist.ts";
import { SafeFetchError, parseRetryAfter, publicReasons, secondsText, sizeLimitText } from "./safe-fetch-error.ts";

export type FetchedBody = { body: Buffer; contentType: string | undefined };
export type FetchAnswer = { kind: "body"; body: FetchedBody } | { kind: "redirect"; status: number; location: string | undefined };

type FetchOnceOptions = {
  client: typeof http | typeof https;
  maxBytes: number;
  idleMs: number;
  allowedPrivateHosts: readonly AllowedPrivateHost[];
  resolver: Resolver;
  // Aborted (with a SafeFetchError as its reason) when the whole download's deadline passes.
  signal: AbortSignal;
  isRedirect: (status: number) => boolean;
  // Kept-alive connections per origin (origin-agents.ts); without, each request connects afresh.
  agents?: OriginAgents;
};

// One request, no redirects followed. The promise settles once, and only with a FetchAnswer or a
// SafeFetchError: every listener stays attached after settling (a late 'error' from a socket or
// the parser must find a listener, or it would be thrown out of the event loop and kill the process).
// With agents, a connection whose answer was read to its end goes back to its origin's agent (a
// connect and a close less per download: ~3.5% of the worker's busy main thread, profiled); any
// other end closes it. A kept connection only ever serves the origin whose address check it passed
// when it connected (the request's guarded lookup), and the caller's allowlist: the agents are the
// caller's own.
export const fetchOnce = (url: URL, options: FetchOnceOptions): Promise<FetchAnswer> =>
  new Promise<FetchAnswer>((resolve, reject) => {
    let settled = false;
    let phase: "connect" | "body" = "connect";
    let request: http.ClientRequest | undefined;
    // `complete`: the answer's body was read to its end, so its connection may serve the next request.
    const finish = (outcome: { answer: FetchAnswer; complete?: boolean } | { error: unknown }) => {
      if (settled) return;
      settled = true;
      options.signal.removeEventListener("abort", onAbort);
      // Without agents (agent: false) the connection is ours alone: closing it is always right.
      if (!(options.agents && "answer" in outcome && outcome.complete)) request?.destroy();
      if ("answer" in outcome) resolve(outcome.answer);
      else reject(toSafeFetchError(outcome.error, { host: url.host, phase }));
    };
    const fail = (error: unknown) => finish({ error });
    const onAbort = () => fail(options.signal.reason);

    const send = (mayRetryStale: boolean) => {
      const sent = options.client.request(url, {
        method: "GET",
        agent: options.agents ? options.agents.agentFor(url) : false,
        lookup: guardedLookup(url, options.allowedPrivateHosts, options.resolver),
        // We never decompress: an encoded answer is refused below rather than mistaken for an image.
        headers: { "accept-encoding": "identity", accept: "image/*,*/*;q=0.5" },
      });
      request = sent;
      sent.on("error", (error) => {
        if (request !== sent) return;
        // A stale kept connection: the GET is sent once more on a fresh one (safe-post.ts does the same).
        if (mayRetryStale && phase === "connect" && failedOnStaleKeptSocket(sent, error) && !settled) {
          try {
            return send(false);
          } catch (retryError) {
            return fail(retryError);
          }
        }
        fail(error);
      });
      sent.setTimeout(options.idleMs, () => {
        if (request !== sent) return;
        const reason = `timed out after ${secondsText(options.idleMs)} without data`;
        fail(new SafeFetchError("timeout", `${reason} from ${url.host} (${phase})`, { publicReason: reason }));
      });
      // A 101 to a plain GET: without this listener node:http drops the socket without a word, and
      // only the total deadline would end the wait.
      sent.on("upgrade", (_response, socket) => {
        socket.destroy();
        const detail = `${url.host} answered 101 Switching Protocols`;
        fail(new SafeFetchError("malformed", detail, { publicReason: publicReasons.malformed }));
      });
      sent.on("response", onResponse);
      sent.end();
    };
    if (options.signal.aborted) return onAbort();
    options.signal.addEventListener("abort", onAbort, { once: true });

    const onResponse = (response: http.IncomingMessage) => {
      phase = "body";
      response.on("error", fail);
      try {
        const status = response.statusCode ?? 0;
        if (options.isRedirect(status)) return finish({ answer: { kind: "redirect", status, location: response.headers.location } });
        if (status !== 200) {
          const retryAfterMs = parseRetryAfter(response.headers["retry-after"]);
          const publicReason = `HTTP ${status}`;
          return fail(new SafeFetchError("http_status", `${publicReason} from ${url.host}`, { publicReason, status, retryAfterMs }));
        }
        const encoding = response.headers["content-encoding"]?.trim().toLowerCase();
        if (encoding && encoding !== "identity") {
          const detail = `${url.host} answered with content-encoding ${JSON.stringify(encoding.slice(0, 50))}, which we did not accept`;
          const publicReason = "the server sent a compressed (content-encoded) answer, which is not accepted";
          return fail(new SafeFetchError("malformed", detail, { publicReason }));
        }
        const tooLarge = (size: string) =>
          new SafeFetchError("too_large", `${url.host} sent ${size}; the limit is ${options.maxBytes} bytes`, {
            publicReason: `larger than the ${sizeLimitText(options.maxBytes)} limit`,
          });
        const declared = Number(response.headers["content-length"]);
        if (Number.isFinite(declared) && declared > options.maxBytes) return fail(tooLarge(`Content-Length ${declared}`));
        const chunks: Buffer[] = [];
        let size = 0;
        response.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size > options.maxBytes) return fail(tooLarge(`more than ${options.maxBytes} bytes`));
          chunks.push(chunk);
        });
        response.on("end", () => {
          // node:http ends a body early only with an error, but 'end' without completion would be a
          // truncated image: never hand that on.
          if (!response.complete) {
            return fail(new SafeFetchError("interrupted", `body from ${url.host} ended early`, { publicReason: publicReasons.interrupted }));
          }
          const body = { body: Buffer.concat(chunks), contentType: response.headers["content-type"] };
          finish({ answer: { kind: "body", body }, complete: true });
        });
      } catch (error) {
        fail(error);
      }
    };
    try {
      send(true);
    } catch (error) {
      fail(error);
    }
  });
