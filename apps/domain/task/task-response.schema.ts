import { z } from "zod";
import { klingTaskStatuses } from "../provider/kling-protocol/kling-wire.schema.ts";
import { taskStatuses } from "./task-status.ts";

// What the task routes answer, as zod: the presenters are typed against these (so the code cannot
// drift from them) and the OpenAPI document is generated from them (apps/api/openapi/).

export const isoTime = z.iso.datetime({ offset: true });
export const nullableIso = isoTime.nullable();

export const nativeTaskImageSchema = z
  .object({
    index: z.int().min(0),
    url: z.url().meta({ description: "Signed link, valid without an Authorization header until it expires (IMAGE_LINK_TTL_SECONDS)" }),
    width: z.int().nullable(),
    height: z.int().nullable(),
    bytes: z.int().nullable(),
    sha256: z.string().nullable(),
  })
  .meta({ id: "NativeTaskImage" });

export const nativeTaskSchema = z
  .object({
    id: z.uuid(),
    external_task_id: z.string().nullable(),
    status: z.enum(taskStatuses),
    status_message: z.string().meta({ description: "What is happening, in words (why a task waits, why it failed)" }),
    request: z.object({
      image: z.union([z.object({ kind: z.literal("url"), url: z.string() }), z.object({ kind: z.literal("base64") })]),
      up_expansion_ratio: z.number(),
      down_expansion_ratio: z.number(),
      left_expansion_ratio: z.number(),
      right_expansion_ratio: z.number(),
      prompt: z.string().nullable(),
      n: z.int(),
      watermark: z.boolean().nullable(),
      source: z.object({ width: z.int().nullable(), height: z.int().nullable() }).nullable().meta({ description: "The source image's size once it has been checked" }),
    }),
    callback_url: z.string().nullable(),
    provider: z.object({
      name: z.string().nullable(),
      route: z.string().nullable().meta({ description: "The provider route (PROVIDER_ROUTES) that ran the task, or is trying it" }),
      unit_price: z.number().nullable().meta({ description: "That route's price per slot-task (n = 1), when configured" }),
      task_id: z.string().nullable(),
      status: z.string().nullable(),
      status_message: z.string().nullable(),
      final_unit_deduction: z.string().nullable(),
    }),
    attempts: z.int(),
    failure: z.object({ class: z.string(), code: z.string().nullable(), message: z.string().nullable() }).nullable(),
    images: z.array(nativeTaskImageSchema),
    created_at: isoTime,
    submitted_at: nullableIso,
    finished_at: nullableIso,
    updated_at: isoTime,
  })
  .meta({ id: "NativeTask" });

export type NativeTask = z.infer<typeof nativeTaskSchema>;

export const nativeTaskPageSchema = z
  .object({ data: z.array(nativeTaskSchema), next_cursor: z.uuid().nullable() })
  .meta({ id: "NativeTaskPage" });

export const nativeTaskEventSchema = z
  .object({
    id: z.string(),
    from: z.enum(taskStatuses).nullable(),
    to: z.enum(taskStatuses),
    source: z.string(),
    detail: z.unknown(),
    at: isoTime,
  })
  .meta({ id: "NativeTaskEvent" });

export type NativeTaskEvent = z.infer<typeof nativeTaskEventSchema>;

export const nativeTaskEventListSchema = z.object({ data: z.array(nativeTaskEventSchema) }).meta({ id: "NativeTaskEventList" });

// The provider's task object (KLING.md), as the drop-in routes and outbound callbacks carry it.
export const dropinTaskSchema = z
  .object({
    task_id: z.string(),
    task_status: z.enum(klingTaskStatuses),
    task_status_msg: z.string(),
    task_info: z.object({ external_task_id: z.string().optional() }),
    created_at: z.int().meta({ description: "Unix milliseconds" }),
    updated_at: z.int().meta({ description: "Unix milliseconds" }),
    final_unit_deduction: z.string().optional(),
    task_result: z.object({ images: z.array(z.object({ index: z.int(), url: z.url() })) }).optional(),
  })
  .meta({ id: "DropinTask" });

export type DropinTask = z.infer<typeof dropinTaskSchema>;

const envelope = <T extends z.ZodType>(data: T) =>
  z.object({ code: z.literal(0), message: z.string(), request_id: z.string(), data });

export const dropinCreatedSchema = envelope(
  z.object({
    task_id: z.string(),
    task_status: z.literal("submitted"),
    task_info: z.object({ external_task_id: z.string().optional() }),
    created_at: z.int(),
    updated_at: z.int(),
  }),
).meta({ id: "DropinCreateAnswer" });
export const dropinTaskAnswerSchema = envelope(dropinTaskSchema).meta({ id: "DropinTaskAnswer" });
export const dropinTaskListAnswerSchema = envelope(z.array(dropinTaskSchema)).meta({ id: "DropinTaskListAnswer" });
