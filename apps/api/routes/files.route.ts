import { Router } from "express";
import { z } from "zod";
import { AppError } from "../../domain/errors/app-error.ts";
import { verifyImageLink } from "../../domain/storage/signed-link.ts";
import type { ApiDeps } from "../api-deps.ts";
import { problemDetailsHandler } from "../middleware/error-handlers.ts";
import { methodNotAllowed } from "../middleware/method-not-allowed.ts";
import { sendStoredImage } from "./send-stored-image.ts";

const str = (v: unknown) => (typeof v === "string" ? v : undefined);

// Signed, expiring image links: usable without an Authorization header, like the provider's URLs.
export const filesRouter = (deps: ApiDeps): Router => {
  const router = Router();
  router.get("/tasks/:taskId/images/:index", async (req, res) => {
    const index = z.coerce.number().int().min(0).max(8).safeParse(req.params.index);
    const taskId = z.uuid().safeParse(req.params.taskId);
    if (!index.success || !taskId.success) throw new AppError("not_found", "image not found");
    const verdict = verifyImageLink(deps.linkKey, taskId.data, index.data, str(req.query.expires), str(req.query.signature));
    if (verdict !== "ok") {
      throw new AppError("unauthenticated", verdict === "expired" ? "this image link has expired; fetch the task again for a fresh one" : "invalid image link signature");
    }
    const image = await deps.db
      .selectFrom("taskImage")
      .select(["storageKey", "sha256"])
      .where("taskId", "=", taskId.data)
      .where("index", "=", index.data)
      .executeTakeFirst();
    await sendStoredImage(res, deps.storage, image);
  });
  // A task's source as we stored it (after our check): what the provider downloads when
  // PROVIDER_IMAGE_DELIVERY sends it a link rather than the bytes inline.
  router.get("/tasks/:taskId/source", async (req, res) => {
    const taskId = z.uuid().safeParse(req.params.taskId);
    if (!taskId.success) throw new AppError("not_found", "image not found");
    const verdict = verifyImageLink(deps.linkKey, taskId.data, "source", str(req.query.expires), str(req.query.signature));
    if (verdict !== "ok") {
      throw new AppError("unauthenticated", verdict === "expired" ? "this image link has expired" : "invalid image link signature");
    }
    const task = await deps.db.selectFrom("task").select("sourceKey").where("id", "=", taskId.data).executeTakeFirst();
    await sendStoredImage(res, deps.storage, task?.sourceKey ? { storageKey: task.sourceKey, sha256: null } : undefined);
  });
  router.all(["/tasks/:taskId/images/:index", "/tasks/:taskId/source"], methodNotAllowed("GET"));
  router.use(problemDetailsHandler(deps.logger));
  return router;
};
