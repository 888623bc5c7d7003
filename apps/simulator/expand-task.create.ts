import { expandRequestBodySchema, toFieldViolations } from "../domain/expand-request/expand-request.schema.ts";
import { inspectSourceImage } from "../domain/expand-request/source-image.ts";
import { forcedErrorMessage, ProviderRefusal } from "./provider-reply.ts";
import type { SimSettings } from "./sim-settings.schema.ts";
import type { SimTaskStore } from "./sim-task.store.ts";
import type { SimTask } from "./sim-task.ts";
import { loadSourceImage } from "./source-image.load.ts";
import type { TaskLifecycle } from "./task-lifecycle.ts";

type Deps = {
  store: SimTaskStore;
  lifecycle: TaskLifecycle;
  settings: () => SimSettings;
  random?: () => number;
};

const CONTENT_POLICY_MESSAGE = "content policy: the image was flagged by the content safety system";
const GENERATION_FAILURE_MESSAGE = "internal error: the generation failed, please retry";

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

const invalid = (violations: { field: string; message: string }[]) =>
  new ProviderRefusal(1201, violations.map((v) => `${v.field}: ${v.message}`).join("; "));

// Kling's docs spell the downward ratio two ways (KLING.md); SIM_DOWN_FIELD picks the one this
// simulated provider knows. The other is ignored, as an unknown field would be.
const applyDownField = (body: Record<string, unknown>, downField: SimSettings["down_field"]) => {
  if (downField === "down") delete body.bottom_expansion_ratio;
  if (downField === "bottom") delete body.down_expansion_ratio;
};

const acceptedDownField = (downField: SimSettings["down_field"]) =>
  downField === "bottom" ? "bottom_expansion_ratio" : "down_expansion_ratio";

const pickRunMs = ({ min, max }: SimSettings["run_ms"], random: () => number) => min + Math.floor(random() * (max - min + 1));

// Validates a create body exactly as the provider would, then admits the task (duplicate and capacity
// checks) and starts it. Throws ProviderRefusal for anything the provider would refuse.
export const createExpandTask = async (
  { store, lifecycle, settings, random = Math.random }: Deps,
  account: string,
  rawBody: unknown,
): Promise<{ task: SimTask; submittedCallback: Promise<void> }> => {
  const body = isObject(rawBody) ? { ...rawBody } : rawBody;
  if (isObject(body) && typeof body.external_task_id === "string") store.countCreateCall(account, body.external_task_id);
  const s = settings();
  if (s.create_error_code !== null) {
    store.stats().create_errors_forced += 1;
    throw new ProviderRefusal(s.create_error_code, forcedErrorMessage(s.create_error_code));
  }
  if (isObject(body)) applyDownField(body, s.down_field);

  const parsed = expandRequestBodySchema.safeParse(body ?? {});
  if (!parsed.success) {
    store.stats().rejected_invalid += 1;
    throw invalid(
      toFieldViolations(parsed.error).map((v) =>
        v.field === "down_expansion_ratio" && s.down_field !== "both" ? { field: acceptedDownField(s.down_field), message: "is required" } : v,
      ),
    );
  }
  const request = parsed.data;
  const loaded = await loadSourceImage(request.image, s.image_fetch_timeout_ms);
  const check = loaded.ok ? await inspectSourceImage(loaded.bytes) : { ok: false as const, reason: loaded.reason };
  if (!check.ok || !loaded.ok) {
    store.stats().rejected_invalid += 1;
    throw invalid([{ field: "image", message: check.ok ? "could not be read" : check.reason }]);
  }

  // Settings are read again: the image download may have taken a while.
  const now = settings();
  const fails = random() < now.fail_rate;
  const task = store.admit(
    {
      account,
      externalTaskId: request.externalTaskId,
      n: request.n,
      ratios: request.ratios,
      prompt: request.prompt,
      callbackUrl: request.callbackUrl,
      runMs: pickRunMs(now.run_ms, random),
      plannedFailure: fails ? (random() < now.content_policy_share ? CONTENT_POLICY_MESSAGE : GENERATION_FAILURE_MESSAGE) : undefined,
      reorderCallbacks: random() < now.callback_reorder,
    },
    now.capacity,
    now.foreign_slots_in_use,
  );
  return { task, submittedCallback: lifecycle.start(task, loaded.bytes) };
};
