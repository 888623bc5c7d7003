import { Router } from "express";
import { z } from "zod";
import { acceptTask } from "../../domain/task/accept-task.ts";
import { getAccountTask, listAccountTasks, listTaskEvents } from "../../domain/task/task.repository.ts";
import { taskStatuses } from "../../domain/task/task-status.ts";
import { uuidCursorSchema, pageLimitSchema } from "../../domain/db/keyset-page.ts";
import type { ApiDeps } from "../api-deps.ts";
import { authenticate } from "../middleware/authenticate.ts";
import { readJsonBody } from "../middleware/body-intake.ts";
import { problemDetailsHandler } from "../middleware/error-handlers.ts";
import { methodNotAllowed } from "../middleware/method-not-allowed.ts";
import { idempotentJson } from "../middleware/idempotency.ts";
import { toNativeEvent, toNativeTask } from "../presenters/task.presenter.ts";
import { parseExpandRequest, parseInput } from "./parse-request.ts";
import { sendStoredImage } from "./send-stored-image.ts";
import { afterWait, parseWaitSeconds, taskStreamHandler } from "./task-live.route.ts";

const bodyLimitBytes = 16 * 1024 * 1024;

export const nativeListQuerySchema = z.object({
  external_task_id: z.string().min(1).optional(),
  status: z.enum(taskStatuses).optional(),
  cursor: uuidCursorSchema.optional(),
  limit: pageLimitSchema,
});

export const nativeTasksRouter = (deps: ApiDeps): Router => {
  const router = Router();
  // The key first: an unauthenticated body is never read.
  router.use(authenticate(deps.authenticator));

  // A retried create (same external_task_id, same request) answers the first task again, marked
  // as a replay; a different request under the same external_task_id is a 409.
  // Idempotency-Key: the same key and body answers the first answer again (idempotency.ts).
  router.post("/", readJsonBody(deps.bodyBudget, { limit: bodyLimitBytes }), idempotentJson(deps.db, deps.idempotency), async (req, res) => {
    const { task, replayed, replayedBy } = await acceptTask(deps.intake, res.locals.accountId, parseExpandRequest(req.body));
    if (replayed) res.setHeader("idempotent-replayed", "true");
    if (replayedBy === "window") res.setHeader("replayed-by", "window");
    res
      .status(202)
      .location(`${req.baseUrl}/${task.id}`)
      .json(toNativeTask({ ...task, images: [] }, deps.signLink));
  });

  router.get("/", async (req, res) => {
    const query = parseInput(nativeListQuerySchema, req.query);
    const page = await listAccountTasks(deps.db, res.locals.accountId, {
      externalTaskId: query.external_task_id,
      status: query.status,
      cursor: query.cursor,
      limit: query.limit,
    });
    res.json({ data: page.tasks.map((t) => toNativeTask(t, deps.signLink)), next_cursor: page.nextCursor ?? null });
  });

  // `?wait=<seconds>` long-polls until the status changes.
  router.get("/:taskId", async (req, res) => {
    const waitSeconds = parseWaitSeconds(deps, req);
    const task = await getAccountTask(deps.db, res.locals.accountId, req.params.taskId);
    res.json(toNativeTask(await afterWait(deps, req, res, task, waitSeconds, (before, after) => before !== after), deps.signLink));
  });

  router.get("/:taskId/stream", taskStreamHandler(deps));

  router.get("/:taskId/events", async (req, res) => {
    const events = await listTaskEvents(deps.db, res.locals.accountId, req.params.taskId);
    res.json({ data: events.map(toNativeEvent) });
  });

  router.get("/:taskId/images/:index", async (req, res) => {
    const index = parseInput(z.coerce.number().int().min(0).max(8), req.params.index);
    const task = await getAccountTask(deps.db, res.locals.accountId, req.params.taskId);
    await sendStoredImage(res, deps.storage, task.status === "succeeded" ? task.images.find((i) => i.index === index) : undefined);
  });

  // The source as we keep it: an inline (Base64) one, or a URL source's bytes once we downloaded and
  // checked them (404 until then). The dashboard shows this, never the caller's URL.
  router.get("/:taskId/source", async (req, res) => {
    const task = await getAccountTask(deps.db, res.locals.accountId, req.params.taskId);
    await sendStoredImage(res, deps.storage, task.sourceKey ? { storageKey: task.sourceKey, sha256: null } : undefined);
  });

  router.all("/", methodNotAllowed("GET", "POST"));
  router.all(["/:taskId", "/:taskId/events", "/:taskId/stream", "/:taskId/images/:index", "/:taskId/source"], methodNotAllowed("GET"));
  router.use(problemDetailsHandler(deps.logger));
  return router;
};
