import express, { Router, type Request, type Response } from "express";
import { z } from "zod";
import type { Logger } from "../domain/logging/logger.ts";
import type { HangingCalls } from "./fault-injection.ts";
import type { ResultImageCache } from "./result-image.cache.ts";
import { renderSampleImage, sampleImageQuerySchema } from "./sample-image.render.ts";
import { serializeSettings, simSettingsPatchSchema, type SimSettings } from "./sim-settings.schema.ts";
import type { SimTaskStore } from "./sim-task.store.ts";
import type { SimTask } from "./sim-task.ts";
import type { TaskLifecycle } from "./task-lifecycle.ts";

export type AdminRouteDeps = {
  store: SimTaskStore;
  lifecycle: TaskLifecycle;
  results: ResultImageCache;
  hanging: HangingCalls;
  settings: () => SimSettings;
  updateSettings: (next: SimSettings) => void;
  // SIM_TASK_CONTROL: the routes that end tasks and send callbacks on demand, and the manual clock.
  taskControl: boolean;
  logger: Logger;
};

const failBodySchema = z
  .object({ message: z.string({ error: "must be a string" }).max(1_000, { error: "must be at most 1000 characters" }).optional() })
  .strict();

const accountFilter = (req: Request): string | undefined =>
  typeof req.query.account === "string" && req.query.account !== "" ? req.query.account : undefined;

// Test-double controls under /_sim. No auth on purpose: the simulator is a local test double and
// must never be exposed; these routes exist so tests can switch faults and assert on what happened.
export const adminRoutes = (deps: AdminRouteDeps): Router => {
  const { store, settings } = deps;
  const router = Router();
  const taskView = (t: SimTask) => ({
    task_id: t.taskId,
    account: t.account,
    external_task_id: t.externalTaskId ?? null,
    status: t.status,
    status_msg: t.statusMsg,
    n: t.n,
    create_count: store.createCountOf(t),
    run_ms: t.runMs,
    callback_url: t.callbackUrl ?? null,
    created_at: t.createdAt,
    updated_at: t.updatedAt,
  });

  router.get("/config", (_req, res) => {
    res.json(serializeSettings(settings()));
  });

  router.patch("/config", express.json(), (req: Request, res: Response) => {
    const parsed = simSettingsPatchSchema.safeParse(req.body ?? {});
    if (!parsed.success) {
      const message = parsed.error.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; ");
      return res.status(400).json({ error: "invalid_config", message });
    }
    const patch = Object.fromEntries(Object.entries(parsed.data).filter(([, v]) => v !== undefined));
    if (patch.clock === "manual" && !deps.taskControl) {
      return res.status(400).json({ error: "invalid_config", message: "clock: manual needs SIM_TASK_CONTROL=true (else nothing could end a task)" });
    }
    const next = { ...settings(), ...patch } as SimSettings;
    const resume = settings().clock === "manual" && next.clock === "auto";
    deps.updateSettings(next);
    if (resume) deps.lifecycle.resumeTimers();
    deps.logger.info({ changed: Object.keys(patch) }, "simulator config changed");
    res.json(serializeSettings(next));
  });

  // ?account=<token or JWT iss> narrows the numbers to one account (tests sharing a simulator).
  router.get("/stats", (req: Request, res: Response) => {
    const account = accountFilter(req);
    res.json({
      ...store.stats(),
      ...store.slotUsage(account),
      capacity: settings().capacity,
      foreign_slots_in_use: settings().foreign_slots_in_use,
      ...(account === undefined ? {} : { account, tasks: store.list(account).length }),
      result_bytes_in_memory: deps.results.bytes(),
    });
  });

  router.get("/tasks", (req: Request, res: Response) => {
    // Oldest first: the order the tasks were created in.
    const tasks = store.list(accountFilter(req)).reverse();
    res.json(
      tasks.map(taskView),
    );
  });

  // The provider forgets one task: `{id}` is a task_id, or with ?account= that account's
  // external_task_id. Gets answer 1203 from then on and the external_task_id may be used again.
  router.delete("/tasks/:id", (req: Request, res: Response) => {
    const task = store.forget(String(req.params.id), accountFilter(req));
    if (!task) return res.status(404).json({ error: "not_found", message: `no task ${String(req.params.id)}` });
    deps.logger.info({ providerTaskId: task.taskId }, "task forgotten");
    res.json({ forgotten: true, task_id: task.taskId, account: task.account, external_task_id: task.externalTaskId ?? null, status: task.status });
  });

  // Time control for tests (SIM_TASK_CONTROL=true): end a running task now, or send its callback
  // again. `{id}` is a task_id or an external_task_id (with ?account=, that account's; without, the
  // only task that has it). Each answers once the callback has been handled, with the task.
  const controlled = (handler: (task: SimTask, req: Request, res: Response) => Promise<void>) => async (req: Request, res: Response) => {
    if (!deps.taskControl) {
      return res.status(404).json({ error: "not_found", message: "task control is off: start the simulator with SIM_TASK_CONTROL=true" });
    }
    const id = String(req.params.id);
    const account = accountFilter(req);
    let task = store.locate(id, account);
    if (!task && account === undefined) {
      const matches = store.list().filter((t) => t.externalTaskId === id);
      if (matches.length > 1) {
        return res.status(409).json({ error: "ambiguous", message: `${matches.length} accounts have a task with external_task_id ${id}; add ?account=` });
      }
      task = matches[0];
    }
    if (!task) return res.status(404).json({ error: "not_found", message: `no task ${id}` });
    await handler(task, req, res);
  };
  const ended = (res: Response, task: SimTask) =>
    res.status(409).json({ error: "already_ended", message: `task ${task.taskId} has already ended (${task.status})`, task: taskView(task) });

  // Time control for calls: every call held by a "timeout" fault loses its connection now, as it
  // would at hang_ms (the client sees a reset, not an answer).
  router.post("/hanging/drop", (_req: Request, res: Response) => {
    if (!deps.taskControl) {
      return res.status(404).json({ error: "not_found", message: "task control is off: start the simulator with SIM_TASK_CONTROL=true" });
    }
    res.json({ dropped: deps.hanging.dropAll() });
  });

  router.post("/tasks/:id/finish", controlled(async (task, _req, res) => {
    if (!(await deps.lifecycle.endNow(task))) return void ended(res, task);
    res.json(taskView(task));
  }));

  router.post("/tasks/:id/fail", express.json(), controlled(async (task, req, res) => {
    const body = failBodySchema.safeParse(req.body ?? {});
    if (!body.success) {
      const message = body.error.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; ");
      return void res.status(400).json({ error: "bad_request", message });
    }
    if (!(await deps.lifecycle.endNow(task, { fail: body.data.message ?? "failed on demand (simulator task control)" }))) return void ended(res, task);
    res.json(taskView(task));
  }));

  router.post("/tasks/:id/callback", controlled(async (task, _req, res) => {
    if (!task.callbackUrl) return void res.status(409).json({ error: "no_callback_url", message: `task ${task.taskId} has no callback_url` });
    await deps.lifecycle.callbackNow(task);
    res.json(taskView(task));
  }));

  // Create calls per external_task_id, accepted or not (a forced error, a duplicate, over capacity).
  router.get("/create-calls", (req: Request, res: Response) => {
    res.json(store.createCalls(accountFilter(req)));
  });

  router.post("/reset", (_req, res) => {
    deps.lifecycle.cancelAll();
    store.reset();
    res.json({ ok: true });
  });

  // GET /_sim/sample.png?width=600&height=400: a source image to try the orchestrator with.
  router.get("/sample.png", async (req: Request, res: Response) => {
    const size = sampleImageQuerySchema.safeParse(req.query);
    if (!size.success) return res.status(400).json({ error: "bad_request", message: "width and height must be whole numbers from 300 to 4000" });
    const image = await renderSampleImage(size.data);
    res.status(200).type("image/png").set("content-length", String(image.length)).send(image);
  });

  // Result downloads need no auth, like the provider's CDN URLs.
  router.get("/results/:taskId/:file", (req: Request, res: Response) => {
    const match = /^(\d+)\.png$/.exec(String(req.params.file));
    const image = match ? deps.results.get(String(req.params.taskId), Number(match[1])) : undefined;
    if (!image) return res.status(404).type("text/plain").send("not found");
    res.status(200).type("image/png").set("content-length", String(image.length)).send(image);
  });

  return router;
};
