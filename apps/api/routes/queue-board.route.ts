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

// The board's own router; its packages (~0.25 s of CPU to load) only when the board is configured.
const boardRouter = async (queue: (kind: JobKind) => Queue): Promise<RequestHandler> => {
  const [{ createBullBoard }, { BullMQAdapter }, { ExpressAdapter }] = await Promise.all([
    import("@bull-board/api"),
    import("@bull-board/api/bullMQAdapter"),
    import("@bull-board/express"),
  ]);
  const adapter = new ExpressAdapter();
  adapter.setBasePath(queueBoardPath);
  createBullBoard({
    queues: (Object.keys(jobCatalog) as JobKind[]).map((kind) => new BullMQAdapter(queue(kind))),
    serverAdapter: adapter,
    options: { uiConfig: { boardTitle: "Kling orchestrator queues" } },
  });
  return adapter.getRouter() as RequestHandler;
};

// BullMQ's board over this deployment's queues. Without ADMIN_TOKEN nothing is mounted: the path
// answers 404 like any unknown one. With it, the board is loaded as the app is built and a request
// that comes before it is ready waits for it.
export const queueBoardRouter = (options: { adminToken?: string; queue: (kind: JobKind) => Queue }): Router => {
  const router = Router();
  if (!options.adminToken) return router;
  const board = boardRouter(options.queue);
  // Its failure is the requests' (next(error)), not an unhandled rejection at start.
  board.catch(() => undefined);
  // A router of its own at the board's path, so the mount reads as one (the OpenAPI contract
  // test lists it as an opaque mount) while the board's packages are still loading.
  const mount = Router();
  mount.use(adminOnly(options.adminToken), (req, res, next) => {
    board.then((handler) => handler(req, res, next), next);
  });
  router.use(queueBoardPath, mount);
  return router;
};
