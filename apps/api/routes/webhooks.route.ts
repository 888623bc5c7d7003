import { Router } from "express";
import { z } from "zod";
import { isUuid } from "../../domain/db/uuid.ts";
import { AppError } from "../../domain/errors/app-error.ts";
import { ensureSigningSecrets, rotateSigningSecret } from "../../domain/webhooks/signing-secret.store.ts";
import { findDelivery, listDeliveries, redeliver } from "../../domain/webhooks/webhook-delivery.store.ts";
import { seqCursorSchema, pageLimitSchema } from "../../domain/db/keyset-page.ts";
import type { ApiDeps } from "../api-deps.ts";
import { authenticate } from "../middleware/authenticate.ts";
import { readJsonBody } from "../middleware/body-intake.ts";
import { problemDetailsHandler } from "../middleware/error-handlers.ts";
import { methodNotAllowed } from "../middleware/method-not-allowed.ts";
import { parseInput } from "./parse-request.ts";
import { toAttemptView, toDeliveryView, toSigningSecretView } from "../presenters/webhook-delivery.presenter.ts";

const bodyLimitBytes = 16 * 1024;
const instant = z.iso.datetime({ offset: true, error: "must be an ISO 8601 date-time, e.g. 2026-11-29T10:00:00Z" }).transform((s) => new Date(s));
const deliveryStatus = z.enum(["pending", "succeeded", "failed", "disabled"]);

export const deliveriesQuerySchema = z.object({
  task_id: z.uuid().optional(),
  batch_id: z.uuid().optional(),
  status: deliveryStatus.optional(),
  event_type: z.string().min(1).max(100).optional(),
  since: instant.optional(),
  until: instant.optional(),
  cursor: seqCursorSchema.optional(),
  limit: pageLimitSchema,
});

export const bulkRedeliverSchema = z.strictObject({
  status: z.enum(["failed", "disabled"]).default("failed"),
  since: instant,
  until: instant.optional(),
});

const deliveryNotFound = (id: string) => new AppError("not_found", `delivery '${id.slice(0, 100)}' not found`);

// The account's outbound callbacks: its signing secret, and the log of every delivery and attempt
// with ways to send again. An account sees only its own.
export const webhooksRouter = (deps: ApiDeps): Router => {
  const router = Router();
  router.use(authenticate(deps.authenticator));
  const { serverKey, secretGraceSeconds } = deps.webhooks;

  router.get("/secret", async (_req, res) => {
    res.json(toSigningSecretView(await ensureSigningSecrets(deps.db, serverKey, res.locals.accountId)));
  });

  router.post("/secret/rotate", async (_req, res) => {
    res.json(toSigningSecretView(await rotateSigningSecret(deps.db, serverKey, res.locals.accountId, secretGraceSeconds)));
  });

  router.get("/deliveries", async (req, res) => {
    const query = parseInput(deliveriesQuerySchema, req.query);
    const page = await listDeliveries(deps.db, res.locals.accountId, {
      taskId: query.task_id,
      batchId: query.batch_id,
      status: query.status,
      eventType: query.event_type,
      since: query.since,
      until: query.until,
      cursor: query.cursor,
      limit: query.limit,
    });
    res.json({ data: page.deliveries.map(toDeliveryView), next_cursor: page.nextCursor ?? null });
  });

  // Everything that failed (or was disabled) in a time range, sent again.
  router.post("/deliveries/redeliver", readJsonBody(deps.bodyBudget, { limit: bodyLimitBytes }), async (req, res) => {
    const body = parseInput(bulkRedeliverSchema, req.body ?? {});
    const ids = await redeliver(deps.db, res.locals.accountId, body);
    res.status(202).json({ redelivered: ids.length, ids });
  });

  router.get("/deliveries/:id", async (req, res) => {
    const found = isUuid(req.params.id) ? await findDelivery(deps.db, res.locals.accountId, req.params.id) : undefined;
    if (!found) throw deliveryNotFound(req.params.id);
    res.json({ ...toDeliveryView(found.delivery), attempt_log: found.attempts.map(toAttemptView) });
  });

  router.post("/deliveries/:id/redeliver", async (req, res) => {
    const ids = isUuid(req.params.id) ? await redeliver(deps.db, res.locals.accountId, { id: req.params.id }) : [];
    if (ids.length === 0) throw deliveryNotFound(req.params.id);
    res.status(202).json({ redelivered: 1, ids });
  });

  router.all("/secret", methodNotAllowed("GET"));
  router.all(["/secret/rotate", "/deliveries/redeliver", "/deliveries/:id/redeliver"], methodNotAllowed("POST"));
  router.all(["/deliveries", "/deliveries/:id"], methodNotAllowed("GET"));
  router.use(problemDetailsHandler(deps.logger));
  return router;
};
