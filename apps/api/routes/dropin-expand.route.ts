import { Router } from "express";
import { acceptTask } from "../../domain/task/accept-task.ts";
import { getAccountTask } from "../../domain/task/task.repository.ts";
import type { ApiDeps } from "../api-deps.ts";
import { authenticate } from "../middleware/authenticate.ts";
import { readJsonBody } from "../middleware/body-intake.ts";
import { providerErrorHandler } from "../middleware/error-handlers.ts";
import { methodNotAllowed } from "../middleware/method-not-allowed.ts";
import { toProviderTask } from "../presenters/task.presenter.ts";
import { parseExpandRequest } from "./parse-body.ts";

const bodyLimitBytes = 16 * 1024 * 1024;

// The provider's own routes and shapes (KLING.md), so a client written for CometAPI or Kling works
// against us unchanged. Mounted under both path families.
export const dropinExpandRouter = (deps: ApiDeps): Router => {
  const router = Router();
  // The key first: an unauthenticated body is never read.
  router.use(authenticate(deps.db));

  router.post("/", readJsonBody(deps.bodyBudget, { limit: bodyLimitBytes, lenientContentType: true }), async (req, res) => {
    const request = parseExpandRequest(req.body);
    const task = await acceptTask(deps.intake, res.locals.accountId, request);
    res.status(200).json({
      code: 0,
      message: "SUCCEED",
      request_id: res.locals.requestId,
      data: {
        task_id: task.id,
        task_status: "submitted",
        task_info: { external_task_id: task.externalTaskId ?? undefined },
        created_at: task.acceptedAt.getTime(),
        updated_at: task.updatedAt.getTime(),
      },
    });
  });

  // Kling: "use either task_id or external_task_id".
  router.get("/:taskId", async (req, res) => {
    const task = await getAccountTask(deps.db, res.locals.accountId, req.params.taskId, { byExternalId: true });
    res.json({ code: 0, message: "SUCCEED", request_id: res.locals.requestId, data: toProviderTask(task, deps.signLink) });
  });

  router.all("/", methodNotAllowed("POST"));
  router.all("/:taskId", methodNotAllowed("GET"));
  router.use(providerErrorHandler(deps.logger));
  return router;
};
