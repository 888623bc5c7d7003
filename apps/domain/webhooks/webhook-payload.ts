import { z } from "zod";
import type { Task } from "../db/database.ts";
import type { StoredImageView } from "../task/task.repository.ts";
import { toNativeTask, toProviderTask, type LinkSigner } from "../task/task.presenter.ts";
import type { PayloadKind } from "./outbound-events.ts";

// The row as the transition statement stored it (to_jsonb: snake_case keys, timestamps without a
// zone, which Prisma keeps in UTC).
const snapshotSchema = z
  .record(z.string(), z.unknown())
  .refine((row) => typeof row.id === "string" && typeof row.status === "string" && typeof row.accepted_at === "string", {
    error: "not a task snapshot",
  });

const dateColumns = new Set(["acceptedAt", "submittedAt", "finishedAt", "nextCheckAt", "updatedAt", "submitLeaseUntil"]);
// A task row has a few dozen column names, each renamed at every attempt: renamed once.
const camelNames = new Map<string, string>();
const camel = (key: string) => {
  let name = camelNames.get(key);
  if (name === undefined) {
    name = key.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());
    // Bounded: only a snapshot of a row shape we never wrote could bring new names.
    if (camelNames.size < 1_000) camelNames.set(key, name);
  }
  return name;
};
const utcDate = (value: string) => new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : `${value}Z`);

export const taskFromSnapshot = (snapshot: unknown): Task => {
  const row = snapshotSchema.parse(snapshot);
  const task: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(row)) {
    const name = camel(key);
    if (dateColumns.has(name)) task[name] = typeof value === "string" ? utcDate(value) : null;
    else if (name === "providerUpdatedAt") task[name] = value === null || value === undefined ? null : String(value);
    else task[name] = value;
  }
  return task as Task;
};

// A snapshot's status, without reading the rest of it (undefined if it has none).
export const snapshotStatus = (snapshot: unknown): unknown =>
  typeof snapshot === "object" && snapshot !== null ? (snapshot as Record<string, unknown>).status : undefined;

export type RenderInput = {
  id: string;
  eventType: string;
  payloadKind: string;
  payload: unknown;
  createdAt: Date;
  // The task's stored images, needed once it has succeeded (they do not change after that).
  images: StoredImageView[];
};

// The bytes sent (and signed). Drop-in tasks get the provider's bare task object, as the provider
// itself calls back; everything else the Standard Webhooks envelope {type, timestamp, data}.
export const renderWebhookBody = (input: RenderInput, sign: LinkSigner): string => {
  const kind = input.payloadKind as PayloadKind;
  if (kind === "provider_task") return JSON.stringify(toProviderTask({ ...taskFromSnapshot(input.payload), images: input.images }, sign));
  const data = kind === "native_task" ? toNativeTask({ ...taskFromSnapshot(input.payload), images: input.images }, sign) : input.payload;
  return JSON.stringify({ type: input.eventType, timestamp: input.createdAt.toISOString(), data });
};
