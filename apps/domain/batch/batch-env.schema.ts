import { z } from "zod";

// The API's batch and idempotency settings (a fragment of its env schema).
export const batchEnv = {
  // Streamed (NDJSON/CSV) batch uploads one API process reads at once. They are flat in memory (a
  // line at a time) but each holds a database connection while a chunk is written: one more is
  // answered 503 with Retry-After before its body is read, rather than starving the pool.
  BATCH_STREAMS_MAX: z.coerce.number().int().min(1).max(1_000).default(8),
  // A streamed upload whose API process shows no sign of life for this long (it died: SIGKILL, a
  // lost machine) is ended by the worker's sweep as broken_off, keeping exactly its committed
  // chunks. The reading process renews it every third of this while it reads.
  BATCH_UPLOAD_LEASE_MS: z.coerce.number().int().min(300).max(3_600_000).default(30_000),
  // How far V8 lets the API's heap grow past what the last full collection kept before it collects
  // again (V8's --heap-growing-percent, set at start; 0 leaves V8's own choice). Intake holds one
  // chunk, but each chunk's rows, statement and jobs outlive a young-generation collection and land
  // in the old generation as garbage; V8's own factor (up to 4x the live heap on a large machine)
  // let a long NDJSON upload raise the process by 150-200 MB before a full collection. At 100 the
  // growth stays near the live heap (~40 MB), at the cost of a full collection every few seconds
  // while an upload runs (mostly incremental; docs/batches-and-cli.md has the figures).
  API_HEAP_GROWING_PERCENT: z.coerce.number().int().min(0).max(1_000).default(100),
  // Items per multi-row insert and per BullMQ addBulk.
  BATCH_CHUNK_ITEMS: z.coerce.number().int().min(1).max(3_000).default(1_000),
  // Provider credits per result image (the simulator charges n per task; KLING.md names no price).
  CREDITS_PER_IMAGE: z.coerce.number().min(0).default(1),
  // Credits an account may have spent plus committed; a batch past it is refused. Unset: no cap
  // (an account's own spend_cap_credits column overrides it).
  BATCH_SPEND_CAP_CREDITS: z.coerce.number().int().min(0).optional(),
  // The provider's run time per task assumed by a dry run's estimate until one has been observed.
  BATCH_ESTIMATE_RUN_MS: z.coerce.number().int().min(1).default(30_000),
  // How long an Idempotency-Key's first answer is kept (and replayed).
  IDEMPOTENCY_KEY_TTL_SECONDS: z.coerce.number().int().min(1).default(86_400),
  // An in-flight key older than this belonged to a request that died with its process: taken over.
  IDEMPOTENCY_IN_FLIGHT_SECONDS: z.coerce.number().int().min(1).default(900),
  // Expired keys are deleted this often by each API process.
  IDEMPOTENCY_PRUNE_EVERY_MS: z.coerce.number().int().min(1_000).default(600_000),
};
