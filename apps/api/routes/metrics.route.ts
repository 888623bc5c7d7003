import { Router, type RequestHandler } from "express";
import { safeEqual } from "../../domain/crypto/constant-time.ts";

// With METRICS_TOKEN a scrape must carry `Authorization: Bearer <token>` (Prometheus'
// `authorization: {credentials: ...}`); the counters name routes, accounts' volumes and failure
// classes, which is more than an anonymous caller should see on a reachable port.
const bearerOnly =
  (token: string): RequestHandler =>
  (req, res, next) => {
    const given = /^Bearer\s+(\S+)$/i.exec(req.get("authorization") ?? "")?.[1];
    if (given !== undefined && safeEqual(given, token)) return next();
    res
      .status(401)
      .set("www-authenticate", 'Bearer realm="metrics"')
      .set("cache-control", "no-store")
      .type("text")
      .send("metrics need Authorization: Bearer <METRICS_TOKEN>\n");
  };

// Prometheus scrapes this; see README "Metrics" for the list and how worker-side counters get here.
export const metricsRouter = (scrape: () => Promise<{ contentType: string; body: string }>, token?: string): Router => {
  const router = Router();
  router.get("/metrics", ...(token ? [bearerOnly(token)] : []), async (_req, res) => {
    const { contentType, body } = await scrape();
    res.set("cache-control", "no-store").type(contentType).send(body);
  });
  return router;
};
