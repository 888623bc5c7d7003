import type { Request, RequestHandler, Response } from "express";
import { z } from "zod";
import type { TaskStatus } from "../../domain/db/database.ts";
import { validationError } from "../../domain/errors/app-error.ts";
import { openTaskFeed } from "../../domain/live-progress/task-feed.ts";
import { waitForTaskChange } from "../../domain/live-progress/wait-for-change.ts";
import type { TaskWithImages } from "../../domain/task/task.repository.ts";
import { isTerminal } from "../../domain/task/task-status.ts";
import type { ApiDeps } from "../api-deps.ts";
import { toNativeEvent, toNativeTask } from "../presenters/task.presenter.ts";
import { streamFeed } from "./sse-stream.ts";

const MAX_EVENT_ID = 9_223_372_036_854_775_807n; // task_event.id is a Postgres bigint

// An id this API sent (a task_event id); anything else is refused rather than silently replayed.
export const lastEventIdSchema = z
  .string()
  .refine((v) => /^\d{1,19}$/.test(v) && BigInt(v) <= MAX_EVENT_ID);

const waitMessage = (maxSeconds: number) => `must be a whole number of seconds from 0 to ${maxSeconds}`;
export const waitSchema = (maxSeconds: number) =>
  z.object({
    wait: z
      .string({ error: waitMessage(maxSeconds) })
      .regex(/^\d{1,6}$/, { error: waitMessage(maxSeconds) })
      .transform(Number)
      .pipe(z.number().max(maxSeconds, { error: waitMessage(maxSeconds) }))
      .optional(),
  });

// One schema per limit (one per process in practice): zod builds and compiles a schema when it is
// made, which per request was a visible share of a status read's CPU.
const waitSchemas = new Map<number, ReturnType<typeof waitSchema>>();

// `?wait=<seconds>` on a status read; parsed before the task is read, so a bad value costs nothing.
export const parseWaitSeconds = (deps: ApiDeps, req: Request): number => {
  // No query string, no wait (the common poll): nothing to parse.
  if (!req.url.includes("?")) return 0;
  const max = deps.live.maxWaitSeconds;
  let schema = waitSchemas.get(max);
  if (!schema) waitSchemas.set(max, (schema = waitSchema(max)));
  const parsed = schema.safeParse(req.query);
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

// GET /v1/tasks/{id}/stream: `task` (the task as GET shows it) on connect and after each change;
// with Last-Event-ID, the `transition`s missed since that id come first; `end` once the task ended.
export const taskStreamHandler =
  (deps: ApiDeps): RequestHandler =>
  async (req, res) => {
    const header = req.get("last-event-id");
    const lastEventId = header === undefined || header === "" ? null : lastEventIdSchema.safeParse(header.trim());
    if (lastEventId && !lastEventId.success) {
      throw validationError([{ field: "Last-Event-ID", message: "must be an event id sent by this stream" }]);
    }
    const query = { accountId: res.locals.accountId, taskId: req.params.taskId as string, lastEventId: lastEventId?.data ?? null };
    await streamFeed(
      deps,
      req,
      res,
      () => openTaskFeed(deps.live, query),
      (m) => (m.kind === "task" ? { event: "task", id: m.id, data: toNativeTask(m.task, deps.signLink) } : { event: "transition", id: m.id, data: toNativeEvent(m.event) }),
      { event: "end", data: { reason: "the task has ended" } },
    );
  };
