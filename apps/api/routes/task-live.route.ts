import type { Request, RequestHandler, Response } from "express";
import { z } from "zod";
import type { TaskStatus } from "../../domain/db/database.ts";
import { validationError } from "../../domain/errors/app-error.ts";
import { openTaskFeed, type FeedMessage, type FeedStep } from "../../domain/live-progress/task-feed.ts";
import { waitForTaskChange } from "../../domain/live-progress/wait-for-change.ts";
import type { TaskWithImages } from "../../domain/task/task.repository.ts";
import { isTerminal } from "../../domain/task/task-status.ts";
import type { ApiDeps } from "../api-deps.ts";
import { toNativeEvent, toNativeTask } from "../presenters/task.presenter.ts";

const MAX_EVENT_ID = 9_223_372_036_854_775_807n; // task_event.id is a Postgres bigint

// An id this API sent (a task_event id); anything else is refused rather than silently replayed.
const lastEventIdSchema = z
  .string()
  .refine((v) => /^\d{1,19}$/.test(v) && BigInt(v) <= MAX_EVENT_ID);

const waitMessage = (maxSeconds: number) => `must be a whole number of seconds from 0 to ${maxSeconds}`;
const waitSchema = (maxSeconds: number) =>
  z.object({
    wait: z
      .string({ error: waitMessage(maxSeconds) })
      .regex(/^\d{1,6}$/, { error: waitMessage(maxSeconds) })
      .transform(Number)
      .pipe(z.number().max(maxSeconds, { error: waitMessage(maxSeconds) }))
      .optional(),
  });

// `?wait=<seconds>` on a status read; parsed before the task is read, so a bad value costs nothing.
export const parseWaitSeconds = (deps: ApiDeps, req: Request): number => {
  const parsed = waitSchema(deps.live.maxWaitSeconds).safeParse(req.query);
  if (!parsed.success) throw validationError([{ field: "wait", message: waitMessage(deps.live.maxWaitSeconds) }]);
  return parsed.data.wait ?? 0;
};

// Long-poll: the task once its status changes (as `changed` sees it) or the wait is over. Holds one
// of the account's live places while it waits.
export const afterWait = async (
  deps: ApiDeps,
  req: Request,
  res: Response,
  task: TaskWithImages,
  waitSeconds: number,
  changed: (before: TaskStatus, after: TaskStatus) => boolean,
): Promise<TaskWithImages> => {
  if (waitSeconds === 0 || isTerminal(task.status)) return task;
  const release = deps.live.limits.enter(res.locals.accountId);
  const gone = new AbortController();
  const onClose = () => gone.abort();
  res.once("close", onClose);
  // Gone already while the task was read: its close event has passed.
  if (req.socket.destroyed) gone.abort();
  try {
    return await waitForTaskChange(deps.live, task, { accountId: res.locals.accountId, waitMs: waitSeconds * 1000, changed, signal: gone.signal });
  } finally {
    res.off("close", onClose);
    release();
    // Cut short by a shutdown: the answer is this connection's last, so the server can close it.
    if (deps.live.hub.closed && !res.headersSent) res.setHeader("connection", "close");
  }
};

const sseHeaders = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache, no-transform",
  // Proxies that buffer (nginx) would hold events back.
  "x-accel-buffering": "no",
  // A stream is the connection's last answer: once it ends the socket closes, so a shutting down
  // server is not kept waiting on an idle keep-alive connection.
  connection: "close",
};

const sseFrame = (event: string, data: unknown, id?: string) => `${id === undefined ? "" : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;

// GET /v1/tasks/{id}/stream: Server-Sent Events. `task` (the task as GET shows it) on connect and
// after each change; with Last-Event-ID, the `transition`s missed since that id come first; `end`
// once the task has ended, then the stream closes. A comment line every heartbeat.
export const taskStreamHandler =
  (deps: ApiDeps): RequestHandler =>
  async (req, res) => {
    const header = req.get("last-event-id");
    const lastEventId = header === undefined || header === "" ? null : lastEventIdSchema.safeParse(header.trim());
    if (lastEventId && !lastEventId.success) {
      throw validationError([{ field: "Last-Event-ID", message: "must be an event id sent by this stream" }]);
    }
    const accountId = res.locals.accountId;
    const release = deps.live.limits.enter(accountId);
    let feed;
    try {
      feed = await openTaskFeed(deps.live, { accountId, taskId: req.params.taskId as string, lastEventId: lastEventId?.data ?? null });
    } catch (error) {
      release();
      throw error;
    }
    // The client may have left during the first read, its close event already past; a HEAD (which
    // Express routes here too) learns that the stream exists, and holds nothing open.
    if (req.socket.destroyed || req.method === "HEAD") {
      feed.close();
      release();
      if (req.method === "HEAD") res.writeHead(200, sseHeaders).end();
      return;
    }
    const gone = new AbortController();
    const heartbeat = setInterval(() => res.write(": heartbeat\n\n"), deps.live.heartbeatMs);
    // Whatever ends the stream (the task, the client, a failed read, shutdown) releases everything.
    res.once("close", () => {
      clearInterval(heartbeat);
      gone.abort();
      feed.close();
      release();
    });
    res.writeHead(200, sseHeaders);
    const send = (step: FeedStep) => {
      const frames = step.messages.map((m: FeedMessage) =>
        m.kind === "task" ? sseFrame("task", toNativeTask(m.task, deps.signLink), m.id) : sseFrame("transition", toNativeEvent(m.event), m.id),
      );
      if (frames.length > 0) res.write(frames.join(""));
    };
    let step: FeedStep | undefined = feed.first;
    send(step);
    while (!step.terminal) {
      step = await feed.next(gone.signal);
      // The client left, or this process is shutting down: the client reconnects with its last id.
      if (!step) return void res.end();
      send(step);
    }
    res.end(sseFrame("end", { reason: "the task has ended" }));
  };
