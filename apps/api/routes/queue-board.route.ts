import { createBullBoard } from "@bull-board/api";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { ExpressAdapter } from "@bull-board/express";
import type { Queue } from "bullmq";
import { Router, type RequestHandler } from "express";
import { safeEqual } from "../../domain/crypto/constant-time.ts";
import { jobCatalog, type JobKind } from "../../domain/queues/job-catalog.ts";

export const queueBoardPath = "/admin/queues";

// `Authorization: Bearer <ADMIN_TOKEN>`, or Basic with ADMIN_TOKEN as the password (any user
// name) so that a browser can open the board through its own prompt.
const adminOnly =
  (token: string): RequestHandler =>
  (req, res, next) => {
    const header = req.get("authorization") ?? "";
    const bearer = /^Bearer\s+(\S+)$/i.exec(header)?.[1];
    const basic = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(header)?.[1];
    const password = basic === undefined ? undefined : Buffer.from(basic, "base64").toString("utf8").split(":").slice(1).join(":");
    const given = bearer ?? password;
    if (given !== undefined && safeEqual(given, token)) return next();
    res.status(401).set("www-authenticate", 'Basic realm="queues", charset="UTF-8"').type("text").send("admin credential required");
  };

// BullMQ's board over this deployment's queues. Without ADMIN_TOKEN nothing is mounted: the path
// answers 404 like any unknown one.
export const queueBoardRouter = (options: { adminToken?: string; queue: (kind: JobKind) => Queue }): Router => {
  const router = Router();
  if (!options.adminToken) return router;
  const adapter = new ExpressAdapter();
  adapter.setBasePath(queueBoardPath);
  createBullBoard({
    queues: (Object.keys(jobCatalog) as JobKind[]).map((kind) => new BullMQAdapter(options.queue(kind))),
    serverAdapter: adapter,
    options: { uiConfig: { boardTitle: "Kling orchestrator queues" } },
  });
  router.use(queueBoardPath, adminOnly(options.adminToken), adapter.getRouter());
  return router;
};
