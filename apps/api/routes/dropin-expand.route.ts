import { Router } from "express";
import { z } from "zod";
import { acceptTask } from "../../domain/task/accept-task.ts";
import { getAccountTask, pageAccountTasks } from "../../domain/task/task.repository.ts";
import { toProviderStatus } from "../../domain/task/task-status.ts";
import type { ApiDeps } from "../api-deps.ts";
import { authenticate } from "../middleware/authenticate.ts";
import { readJsonBody } from "../middleware/body-intake.ts";
import { providerErrorHandler } from "../middleware/error-handlers.ts";
import { methodNotAllowed } from "../middleware/method-not-allowed.ts";
import { toProviderTask } from "../presenters/task.presenter.ts";
import { parseExpandRequest, parseInput } from "./parse-request.ts";
import { afterWait, parseWaitSeconds } from "./task-live.route.ts";

// KLING.md "List": pageNum 1..1000, pageSize 1..500.
export const dropinListQuerySchema = z.object({
  pageNum: z.coerce.number({ error: "must be a whole number from 1 to 1000" }).int().min(1).max(1000).default(1),
  pageSize: z.coerce.number({ error: "must be a whole number from 1 to 500" }).int().min(1).max(500).default(30),
});
const bodyLimitBytes = 16 * 1024 * 1024;

// The provider's own routes and shapes (KLING.md), so a client written for CometAPI or Kling works
// against us unchanged. Mounted under both path families.
export const dropinExpandRouter = (deps: ApiDeps): Router => {
  const router = Router();
  // The key first: an unauthenticated body is never read.
  router.use(authenticate(deps.authenticator));

  // A retried create (same external_task_id, same request) answers the first task's create again.
  router.post("/", readJsonBody(deps.bodyBudget, { limit: bodyLimitBytes, lenientContentType: true }), async (req, res) => {
    const { task, replayed, replayedBy } = await acceptTask(deps.intake, res.locals.accountId, parseExpandRequest(req.body), "dropin");
    // The body stays the provider's; the headers say the first task answered again.
    if (replayed) res.setHeader("idempotent-replayed", "true");
    if (replayedBy === "window") res.setHeader("replayed-by", "window");
    res.status(200).json({
      code: 0,
      message: "SUCCEED",
      request_id: res.locals.requestId,
      data: {
        task_id: task.id,
        task_status: "submitted",
        task_info: { external_task_id: task.externalTaskId ?? undefined },
        created_at: task.acceptedAt.getTime(),
        updated_at: task.acceptedAt.getTime(),
      },
    });
  });

  router.get("/", async (req, res) => {
    const query = parseInput(dropinListQuerySchema, req.query);
    const tasks = await pageAccountTasks(deps.db, res.locals.accountId, query);
    res.json({ code: 0, message: "SUCCEED", request_id: res.locals.requestId, data: tasks.map((t) => toProviderTask(t, deps.signLink)) });
  });

  // Kling: "use either task_id or external_task_id". Ours: `?wait=<seconds>` long-polls until the
  // status the provider's vocabulary shows changes (queued -> submitting is no change there).
  router.get("/:taskId", async (req, res) => {
    const waitSeconds = parseWaitSeconds(deps, req);
    const seen = await getAccountTask(deps.db, res.locals.accountId, req.params.taskId, { byExternalId: true });
    const task = await afterWait(deps, req, res, seen, waitSeconds, (before, after) => toProviderStatus(before) !== toProviderStatus(after));
    res.json({ code: 0, message: "SUCCEED", request_id: res.locals.requestId, data: toProviderTask(task, deps.signLink) });
  });

  router.all("/", methodNotAllowed("POST"));
  router.all("/:taskId", methodNotAllowed("GET"));
  router.use(providerErrorHandler(deps.logger));
  return router;
};
