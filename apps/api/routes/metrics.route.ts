import { Router } from "express";

// Prometheus scrapes this; see README "Metrics" for the list and how worker-side counters get here.
export const metricsRouter = (scrape: () => Promise<{ contentType: string; body: string }>): Router => {
  const router = Router();
  router.get("/metrics", async (_req, res) => {
    const { contentType, body } = await scrape();
    res.set("cache-control", "no-store").type(contentType).send(body);
  });
  return router;
};
