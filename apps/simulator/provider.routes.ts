import express, { Router, type Request, type Response } from "express";
import { z } from "zod";
import type { Logger } from "../domain/logging/logger.ts";
import { resolveAccount, type JwtPair } from "./account-auth.ts";
import { createExpandTask } from "./expand-task.create.ts";
import { applyConnectionFault, pickConnectionFault, pickTransientError, type HangingCalls } from "./fault-injection.ts";
import { ProviderRefusal, sendProviderData, sendProviderError, sendRouteUnavailable } from "./provider-reply.ts";
import type { SimSettings } from "./sim-settings.schema.ts";
import type { SimTaskStore } from "./sim-task.store.ts";
import { toWireTask } from "./sim-task.ts";
import type { TaskLifecycle } from "./task-lifecycle.ts";

export type ProviderRouteDeps = {
  store: SimTaskStore;
  lifecycle: TaskLifecycle;
  hanging: HangingCalls;
  settings: () => SimSettings;
  publicUrl: () => string;
  logger: Logger;
  // Run times, failures and callback order of created tasks.
  random?: () => number;
  // Transient errors and connection faults of calls (default: `random`).
  faultRandom?: () => number;
  jwtPair?: JwtPair;
};

const pageQuerySchema = z.object({
  pageNum: z.coerce.number({ error: "must be a whole number" }).int({ error: "must be a whole number" }).min(1, { error: "must be from 1 to 1000" }).max(1000, { error: "must be from 1 to 1000" }).default(1),
  pageSize: z.coerce.number({ error: "must be a whole number" }).int({ error: "must be a whole number" }).min(1, { error: "must be from 1 to 500" }).max(500, { error: "must be from 1 to 500" }).default(30),
});

// Kling's expand routes; mounted at /v1/images/editing/expand and /kling/v1/images/editing/expand.
export const providerRoutes = (deps: ProviderRouteDeps): Router => {
  const { store, settings, random = Math.random, faultRandom = random } = deps;
  const router = Router();

  // Order as a real gateway would: the route exists, the caller is known, then rate faults.
  router.use((req: Request, res: Response, next) => {
    if (settings().route_unavailable) return sendRouteUnavailable(res);
    if (req.method !== "GET" && req.method !== "POST") return sendProviderError(res, 1202, `method ${req.method} is not supported`);
    const auth = resolveAccount(req.get("authorization"), settings(), Date.now(), deps.jwtPair);
    if (!auth.ok) return sendProviderError(res, auth.code, auth.message);
    res.locals.account = auth.account;
    const s = settings();
    store.stats()[req.method === "POST" ? "create_calls" : req.path === "/" ? "list_calls" : "get_calls"] += 1;
    const injected = pickTransientError(s, faultRandom);
    if (injected) {
      store.stats().errors_injected += 1;
      return sendProviderError(res, injected.code, injected.message);
    }
    const fault = pickConnectionFault(s, faultRandom);
    // A lost create answer usually means the task exists: that is what makes a blind retry costly.
    if (fault && !(req.method === "POST" && s.connection_fault_point === "after_create")) {
      store.stats().connection_faults += 1;
      return applyConnectionFault(res, fault, s, deps.hanging);
    }
    res.locals.lateFault = fault;
    next();
  });

  // Parsed only after auth, so an anonymous caller cannot make the simulator read 16 MB.
  // 10 MB of image is about 13.4 MB of Base64.
  router.post("/", express.json({ limit: "16mb" }), async (req: Request, res: Response) => {
    try {
      const { task, submittedCallback } = await createExpandTask(deps, res.locals.account as string, req.body);
      if (settings().callback_mode === "before_create_response") await submittedCallback;
      const fault = res.locals.lateFault as ReturnType<typeof pickConnectionFault>;
      if (fault) {
        store.stats().connection_faults += 1;
        return applyConnectionFault(res, fault, settings(), deps.hanging);
      }
      sendProviderData(res, toWireTask(task, deps.publicUrl()));
    } catch (error) {
      if (error instanceof ProviderRefusal) return sendProviderError(res, error.code, error.message);
      deps.logger.error({ err: error }, "create failed unexpectedly");
      sendProviderError(res, 5000, "internal server error");
    }
  });

  router.get("/", (req: Request, res: Response) => {
    const query = pageQuerySchema.safeParse(req.query);
    if (!query.success) {
      const message = query.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
      return sendProviderError(res, 1201, message);
    }
    const { pageNum, pageSize } = query.data;
    const page = store.list(res.locals.account as string).slice((pageNum - 1) * pageSize, pageNum * pageSize);
    sendProviderData(res, page.map((t) => toWireTask(t, deps.publicUrl())));
  });

  router.get("/:id", (req: Request, res: Response) => {
    const task = store.find(res.locals.account as string, String(req.params.id));
    if (!task) return sendProviderError(res, 1203, "task not found");
    sendProviderData(res, toWireTask(task, deps.publicUrl()));
  });

  return router;
};
