import type { Queue } from "bullmq";
import type { RedisClient } from "../domain/queues/redis-connection.ts";
import type { Authenticator } from "../domain/account/authenticator.ts";
import type { Db } from "../domain/db/database.ts";
import type { LiveLimits } from "../domain/live-progress/live-limits.ts";
import type { LiveDeps } from "../domain/live-progress/live-feed.ts";
import type { TaskChangeNotifier } from "../domain/live-progress/task-change.ts";
import type { Logger } from "../domain/logging/logger.ts";
import type { ProviderRouteSet } from "../domain/provider-capacity/provider-route-set.ts";
import type { JobKind } from "../domain/queues/job-catalog.ts";
import type { StorageHandle } from "../domain/storage/object-storage.ts";
import type { AcceptTaskDeps } from "../domain/task/accept-task.ts";
import type { AcceptBatchDeps } from "../domain/batch/batch-intake.ts";
import type { IdempotencyOptions } from "../domain/idempotency/idempotency-key.ts";
import type { ReceiveCallbackDeps } from "../domain/task/receive-provider-callback.ts";
import type { BodyBudget } from "./middleware/body-intake.ts";
import type { LinkSigner } from "./presenters/task.presenter.ts";
import type { ServerKey } from "../domain/crypto/server-key.ts";

// What the routes are given: plain values and functions, built once in api.server.ts.
export type ApiDeps = {
  db: Db;
  redis: RedisClient;
  logger: Logger;
  storage: StorageHandle;
  authenticator: Authenticator;
  signLink: LinkSigner;
  // Verifies the signed image links (derived from SERVER_KEY).
  linkKey: Buffer;
  intake: AcceptTaskDeps;
  callbacks: ReceiveCallbackDeps;
  // Callbacks whose URL names a route (PROVIDER_ROUTES): undefined for a route not configured.
  callbacksForRoute: (route: string) => ReceiveCallbackDeps | undefined;
  // Read by /readyz and /v1/provider/routes: each route's slots, circuit or pause, run time.
  providerRoutes: ProviderRouteSet;
  // Shared by every route that reads a body: bounds the body bytes held at once.
  bodyBudget: BodyBudget;
  // SSE streams and long-polls: the process's change hub, per-account limits and timings.
  live: LiveDeps & { limits: LiveLimits; heartbeatMs: number; maxWaitSeconds: number };
  // Outbound callbacks: the accounts' signing secrets are sealed under SERVER_KEY.
  webhooks: { serverKey: ServerKey; secretGraceSeconds: number };
  // taskChanged: cancel and retry move tasks, and announce each change to live views.
  batches: AcceptBatchDeps & { estimateRunMs: number; maxStreams: number; taskChanged: TaskChangeNotifier };
  idempotency: IdempotencyOptions;
  // /metrics and the queue board (/admin/queues, mounted only with an ADMIN_TOKEN).
  operations: {
    scrapeMetrics: () => Promise<{ contentType: string; body: string }>;
    metricsToken?: string;
    adminToken?: string;
    queue: (kind: JobKind) => Queue;
  };
};

// Set by the request-id and authenticate middleware; typed here so routes never read `any`.
declare global {
  namespace Express {
    interface Locals {
      requestId: string;
      accountId: string;
    }
  }
}
