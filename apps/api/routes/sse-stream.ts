import type { Request, Response } from "express";
import type { Feed, FeedStep } from "../../domain/live-progress/live-feed.ts";
import type { ApiDeps } from "../api-deps.ts";

export type SseFrame = { event: string; id?: string; data: unknown };

const sseHeaders = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache, no-transform",
  // Proxies that buffer (nginx) would hold events back.
  "x-accel-buffering": "no",
  // A stream is the connection's last answer: once it ends the socket closes, so a shutting down
  // server is not kept waiting on an idle keep-alive connection.
  connection: "close",
};

const encode = ({ event, id, data }: SseFrame) => `${id === undefined ? "" : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;

// Serves a feed (a task's, a batch's) as Server-Sent Events: its messages as frames, a comment line
// every heartbeat, `end` once the feed is terminal, then the stream closes. Holds one of the
// account's live places while open; whatever ends it (the feed, the client, a failed read, shutdown)
// releases the place and the subscription. Errors before the first byte (404, 429) are answered as
// usual by the router's error handler.
export const streamFeed = async <M>(
  deps: ApiDeps,
  req: Request,
  res: Response,
  open: () => Promise<Feed<M>>,
  frame: (message: M) => SseFrame,
  end: SseFrame,
): Promise<void> => {
  const release = deps.live.limits.enter(res.locals.accountId);
  let feed: Feed<M>;
  try {
    feed = await open();
  } catch (error) {
    release();
    throw error;
  }
  // The client may have left during the first read, its close event already past; a HEAD (which
  // Express routes to GET handlers) learns that the stream exists, and holds nothing open.
  if (req.socket.destroyed || req.method === "HEAD") {
    feed.close();
    release();
    if (req.method === "HEAD") res.writeHead(200, sseHeaders).end();
    return;
  }
  const gone = new AbortController();
  const heartbeat = setInterval(() => res.write(": heartbeat\n\n"), deps.live.heartbeatMs);
  res.once("close", () => {
    clearInterval(heartbeat);
    gone.abort();
    feed.close();
    release();
  });
  res.writeHead(200, sseHeaders);
  const send = (step: FeedStep<M>) => {
    if (step.messages.length > 0) res.write(step.messages.map((m) => encode(frame(m))).join(""));
  };
  let step: FeedStep<M> | undefined = feed.first;
  send(step);
  while (!step.terminal) {
    step = await feed.next(gone.signal);
    // The client left, or this process is shutting down: the client reconnects with its last id.
    if (!step) return void res.end();
    send(step);
  }
  res.end(encode(end));
};
