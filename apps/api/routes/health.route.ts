import { Router } from "express";
import { withTimeout } from "../../domain/async/with-timeout.ts";
import type { ApiDeps } from "../api-deps.ts";

const probe = async (check: () => Promise<unknown>) => {
  const started = Date.now();
  try {
    await withTimeout(check(), 2_000, "probe");
    return { ok: true, latency_ms: Date.now() - started };
  } catch (error) {
    return { ok: false, error: (error as Error).message };
  }
};

export const healthRouter = (deps: ApiDeps): Router => {
  const router = Router();
  router.get("/healthz", (_req, res) => {
    res.json({ status: "ok" });
  });
  router.get("/readyz", async (_req, res) => {
    const [postgres, redis] = await Promise.all([
      probe(() => deps.db.$queryRaw`select 1`),
      probe(() => deps.redis.ping()),
    ]);
    const ready = postgres.ok && redis.ok;
    res.status(ready ? 200 : 503).json({ status: ready ? "ready" : "not_ready", checks: { postgres, redis } });
  });
  return router;
};
