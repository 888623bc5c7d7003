import express, { Router, type Request, type Response } from "express";
import type { Logger } from "../domain/logging/logger.ts";
import type { ResultImageCache } from "./result-image.cache.ts";
import { renderSampleImage, sampleImageQuerySchema } from "./sample-image.render.ts";
import { serializeSettings, simSettingsPatchSchema, type SimSettings } from "./sim-settings.schema.ts";
import type { SimTaskStore } from "./sim-task.store.ts";
import type { TaskLifecycle } from "./task-lifecycle.ts";

export type AdminRouteDeps = {
  store: SimTaskStore;
  lifecycle: TaskLifecycle;
  results: ResultImageCache;
  settings: () => SimSettings;
  updateSettings: (next: SimSettings) => void;
  logger: Logger;
};

const accountFilter = (req: Request): string | undefined =>
  typeof req.query.account === "string" && req.query.account !== "" ? req.query.account : undefined;

// Test-double controls under /_sim. No auth on purpose: the simulator is a local test double and
// must never be exposed; these routes exist so tests can switch faults and assert on what happened.
export const adminRoutes = (deps: AdminRouteDeps): Router => {
  const { store, settings } = deps;
  const router = Router();

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
    const next = { ...settings(), ...patch } as SimSettings;
    deps.updateSettings(next);
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
      tasks.map((t) => ({
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
      })),
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
