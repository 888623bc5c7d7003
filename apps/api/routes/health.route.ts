import { Router } from "express";
import { sql } from "kysely";
import { withTimeout } from "../../domain/async/with-timeout.ts";
import type { ApiDeps } from "../api-deps.ts";
import { jobCatalog, type JobKind } from "../../domain/queues/job-catalog.ts";
import { probeQueueWritable } from "../../domain/queues/task-queues.ts";
import { describeProvider } from "../presenters/provider-routes.presenter.ts";

const probe = async (check: () => Promise<unknown>) => {
  const started = Date.now();
  try {
    await withTimeout(check(), 2_000, "probe");
    return { ok: true, latency_ms: Date.now() - started };
  } catch (error) {
    return { ok: false, error: (error as Error).message };
  }
};

const providerDetails = async (deps: ApiDeps) => {
  try {
    return await withTimeout(describeProvider(deps.providerRoutes), 2_000, "provider state");
  } catch (error) {
    return { error: (error as Error).message };
  }
};

export const healthRouter = (deps: ApiDeps): Router => {
  const router = Router();
  router.get("/healthz", (_req, res) => {
    res.json({ status: "ok" });
  });
  router.get("/readyz", async (_req, res) => {
    // Storage by a real write: a read-only or full disk, or S3 refusing, would fail every create
    // that carries an image and every archive.
    const [postgres, redis, storage] = await Promise.all([
      probe(() => sql`select 1`.execute(deps.db)),
      // Every queue written, not one node pinged: on a cluster each queue lives on its own node.
      probe(() => Promise.all((Object.keys(jobCatalog) as JobKind[]).map((kind) => probeQueueWritable(deps.redis, deps.operations.queue(kind))))),
      probe(() => deps.storage.probe()),
    ]);
    const ready = postgres.ok && redis.ok && storage.ok;
    // The provider's state does not make this process unready (intake still works and tasks wait),
    // but operators see it here: an open circuit or a paused account, and slot use, per route.
    const provider = redis.ok ? await providerDetails(deps) : undefined;
    res.status(ready ? 200 : 503).json({ status: ready ? "ready" : "not_ready", checks: { postgres, redis, storage }, provider });
  });
  return router;
};
