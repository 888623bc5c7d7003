import http from "node:http";
import https from "node:https";
import { failedOnStaleKeptSocket } from "../../http/origin-agents.ts";

// How an adapter's requests reach the provider: node:http(s) on a kept-alive agent of the adapter's
// own. The built-in fetch (undici) cost the worker ~4x the CPU per call of this (0.3-1.4 vs
// 0.08-0.3 ms in a same-process comparison at load 20, docs/benchmarks.md#scale-npm-run-benchscale),
// about a provider call a task. The provider is a fixed, configured origin (never a caller's URL),
// so its connections are simply kept, like fetch kept them.
export type ProviderAnswer = { status: number; statusText: string; retryAfter: string | undefined; text: string };

// Thrown for a request that got no whole answer. `answered`: the status line and headers came (the
// body was then cut off or timed out); else no answer came at all, and `code` is the system error's
// code when there was one (ECONNREFUSED: nothing was sent).
export class ProviderTransportError extends Error {
  constructor(
    message: string,
    readonly details: { code: string | undefined; answered: boolean; status?: number },
  ) {
    super(message);
    this.name = "ProviderTransportError";
  }
}

export type ProviderTransport = {
  send: (method: "GET" | "POST", url: string, headers: Record<string, string>, body: string | undefined) => Promise<ProviderAnswer>;
  close: () => void;
};

// Idle kept connections close after this long; Node's agent also closes one a second before the
// server's Keep-Alive timeout, when the server says it.
const IDLE_MS = 30_000;

export const createProviderTransport = (timeoutMs: number): ProviderTransport => {
  const settings = { keepAlive: true, timeout: IDLE_MS, scheduling: "lifo" as const };
  const agents = { "http:": new http.Agent(settings), "https:": new https.Agent(settings) };
  const send: ProviderTransport["send"] = (method, rawUrl, headers, body) =>
    new Promise<ProviderAnswer>((resolve, reject) => {
      let settled = false;
      let status: number | undefined;
      let request: http.ClientRequest | undefined;
      const finish = (outcome: { answer: ProviderAnswer } | { error: unknown }) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if ("answer" in outcome) return resolve(outcome.answer);
        // A connection that failed or was given up mid-answer is never reused.
        request?.destroy();
        const error = outcome.error as { code?: unknown; message?: string };
        const code = typeof error?.code === "string" ? error.code : undefined;
        reject(
          outcome.error instanceof ProviderTransportError
            ? outcome.error
            : new ProviderTransportError(error?.message ?? String(outcome.error), { code, answered: status !== undefined, ...(status === undefined ? {} : { status }) }),
        );
      };
      // One deadline for the whole exchange, the answer's body included (as fetch's timeout signal).
      const timer = setTimeout(() => {
        finish({ error: new ProviderTransportError(`timed out after ${timeoutMs} ms`, { code: "ETIMEDOUT", answered: status !== undefined, ...(status === undefined ? {} : { status }) }) });
      }, timeoutMs);
      const attempt = (url: URL, mayRetryStale: boolean) => {
        const sent = (url.protocol === "https:" ? https : http).request(url, {
          method,
          agent: agents[url.protocol as keyof typeof agents],
          headers: body === undefined ? headers : { ...headers, "content-length": String(Buffer.byteLength(body)) },
        });
        request = sent;
        sent.on("error", (error) => {
          if (request !== sent) return;
          // A kept connection the server closed while it was idle fails as soon as it is written to.
          // A GET is sent once more on a fresh one; a POST is not (it may have reached the provider:
          // the caller's outcome-unknown path finds out).
          if (mayRetryStale && method === "GET" && status === undefined && failedOnStaleKeptSocket(sent, error) && !settled) {
            try {
              return attempt(url, false);
            } catch (retryError) {
              return finish({ error: retryError });
            }
          }
          finish({ error });
        });
        sent.on("response", (response) => {
          status = response.statusCode ?? 0;
          const chunks: Buffer[] = [];
          const cutOff = () => finish({ error: new ProviderTransportError("the answer was cut off", { code: "ECONNRESET", answered: true, status: status! }) });
          response.on("data", (chunk: Buffer) => chunks.push(chunk));
          response.on("error", (error) => finish({ error }));
          response.on("aborted", cutOff);
          response.on("end", () => {
            if (!response.complete) return cutOff();
            const retryAfter = response.headers["retry-after"];
            finish({
              answer: { status: status!, statusText: response.statusMessage ?? "", retryAfter: typeof retryAfter === "string" ? retryAfter : undefined, text: Buffer.concat(chunks).toString("utf8") },
            });
          });
        });
        sent.end(body);
      };
      try {
        const url = new URL(rawUrl);
        if (!(url.protocol in agents)) throw new ProviderTransportError(`unsupported protocol ${url.protocol}`, { code: undefined, answered: false });
        attempt(url, true);
      } catch (error) {
        finish({ error });
      }
    });
  return {
    send,
    close: () => {
      agents["http:"].destroy();
      agents["https:"].destroy();
    },
  };
};
