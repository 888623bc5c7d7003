import { request, type IncomingMessage } from "node:http";

export type SseEvent = { event: string; id: string | undefined; data: string };

export type SseStream = {
  status: number;
  headers: IncomingMessage["headers"];
  // The next event (comments are counted, not returned); rejects when none comes in time or the
  // stream closed first.
  next(timeoutMs?: number): Promise<SseEvent>;
  // Comment lines (heartbeats) seen so far.
  comments(): number;
  // Resolves when the server ended the stream (true) or the connection broke (false).
  ended: Promise<boolean>;
  // The body of a refused (non-200) answer.
  text(): Promise<string>;
  close(): void;
};

// A Server-Sent Events client over node:http, parsed as the WHATWG spec says (fields, comments,
// blank line dispatch, one leading space stripped), so tests see exactly what a browser would.
export const openSse = (url: string, headers: Record<string, string> = {}): Promise<SseStream> =>
  new Promise((resolve, reject) => {
    const req = request(url, { headers: { accept: "text/event-stream", ...headers } }, (res) => {
      const queue: SseEvent[] = [];
      const waiters: Array<() => void> = [];
      let comments = 0;
      let buffer = "";
      let data: string[] = [];
      let event = "";
      let id: string | undefined;
      let finished = false;
      const wake = () => waiters.splice(0).forEach((w) => w());
      const line = (text: string) => {
        if (text === "") {
          if (data.length > 0) queue.push({ event: event || "message", id, data: data.join("\n") });
          data = [];
          event = "";
          id = undefined;
          return wake();
        }
        if (text.startsWith(":")) {
          comments++;
          return;
        }
        const colon = text.indexOf(":");
        const field = colon === -1 ? text : text.slice(0, colon);
        const value = colon === -1 ? "" : text.slice(colon + 1).replace(/^ /, "");
        if (field === "data") data.push(value);
        else if (field === "event") event = value;
        else if (field === "id") id = value;
      };
      const ended = new Promise<boolean>((done) => {
        res.on("end", () => done(true));
        res.on("error", () => done(false));
        res.on("close", () => done(res.complete));
      }).then((clean) => {
        finished = true;
        wake();
        return clean;
      });
      let body = "";
      if (res.statusCode === 200) {
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          buffer += chunk;
          let at: number;
          while ((at = buffer.search(/\r\n|\r|\n/)) !== -1) {
            const sep = buffer.startsWith("\r\n", at) ? 2 : 1;
            line(buffer.slice(0, at));
            buffer = buffer.slice(at + sep);
          }
        });
      } else {
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (body += chunk));
      }
      resolve({
        status: res.statusCode ?? 0,
        headers: res.headers,
        comments: () => comments,
        ended,
        text: async () => {
          await ended;
          return body;
        },
        close: () => req.destroy(),
        next: async (timeoutMs = 15_000) => {
          const deadline = Date.now() + timeoutMs;
          for (;;) {
            const first = queue.shift();
            if (first) return first;
            if (finished) throw new Error("the stream ended before the next event");
            const left = deadline - Date.now();
            if (left <= 0) throw new Error(`no event within ${timeoutMs} ms`);
            await new Promise<void>((w) => {
              const timer = setTimeout(w, left);
              waiters.push(() => {
                clearTimeout(timer);
                w();
              });
            });
          }
        },
      });
    });
    req.on("error", reject);
    req.end();
  });

// Reads events until one satisfies `until` (included), or the stream ends.
export const readUntil = async (stream: SseStream, until: (e: SseEvent) => boolean, timeoutMs = 20_000): Promise<SseEvent[]> => {
  const events: SseEvent[] = [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const event = await stream.next(Math.max(1, deadline - Date.now()));
    events.push(event);
    if (until(event)) return events;
  }
};
