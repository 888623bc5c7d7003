import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import type { Authenticator } from "../domain/account/authenticator.ts";
import type { Db } from "../domain/db/database.ts";
import type { Logger } from "../domain/logging/logger.ts";
import type { JobKind } from "../domain/queues/job-catalog.ts";
import type { ProviderControls } from "../domain/provider-capacity/provider-controls.ts";
import type { ObjectStorage } from "../domain/storage/local-storage.ts";
import type { AcceptTaskDeps } from "../domain/task/accept-task.ts";
import type { ReceiveCallbackDeps } from "../domain/task/receive-provider-callback.ts";
import type { BodyBudget } from "./middleware/body-intake.ts";
import type { LinkSigner } from "./presenters/task.presenter.ts";

// What the routes are given: plain values and functions, built once in api.server.ts.
export type ApiDeps = {
  db: Db;
  redis: Redis;
  logger: Logger;
  storage: ObjectStorage;
  authenticator: Authenticator;
  signLink: LinkSigner;
  // Verifies the signed image links (derived from SERVER_KEY).
  linkKey: Buffer;
  intake: AcceptTaskDeps;
  callbacks: ReceiveCallbackDeps;
  // Read by /readyz: the provider account's slots and whether its circuit is open or it is paused.
  providerControls: ProviderControls;
  // Shared by every route that reads a body: bounds the body bytes held at once.
  bodyBudget: BodyBudget;
  // /metrics and the queue board (/admin/queues, mounted only with an ADMIN_TOKEN).
  operations: { scrapeMetrics: () => Promise<{ contentType: string; body: string }>; adminToken?: string; queue: (kind: JobKind) => Queue };
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
