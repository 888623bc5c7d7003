import type { Db } from "../db/database.ts";
import { AppError, type FieldViolation } from "../errors/app-error.ts";
import type { ExpandRequest } from "../expand-request/expand-request.schema.ts";
import type { ObjectStorage } from "../storage/local-storage.ts";
import type { SettleIntake } from "../queues/fair-priority.ts";
import type { CreditTerms } from "../credits/credit-terms.ts";
import type { RawItem } from "./batch-item-sources.ts";

// What one batch intake works with and answers (accept-batch.ts and the parts it is made of).
export type BatchJob = { id: string; stage: "source" | "submit" };

export type AcceptBatchDeps = {
  db: Db;
  storage: ObjectStorage;
  stallRecheckMs: number;
  checkCallbackUrl: (url: string) => Promise<void>;
  // As a single create's (accept-task.ts): a literal private address in an image URL.
  imageUrlRefusal: (url: string) => string | undefined;
  // BullMQ addBulk of a chunk's first jobs, with the account's fair batch priorities. Throws an
  // AppError 503 when Redis cannot take them: that chunk is then not written. Resolves to the
  // settle of the priorities' in-flight mark, called once the chunk is written or will not be.
  enqueueBatchJobs: (accountId: string, jobs: BatchJob[]) => Promise<SettleIntake>;
  withdrawBatchJobs: (jobs: BatchJob[]) => Promise<void>;
  // Prices, cap and capacity (credits/credit-terms.ts).
  credits: CreditTerms;
  chunkItems: number;
  // How long a streamed upload's batch stays `receiving` without a sign of life from the process
  // reading it (BATCH_UPLOAD_LEASE_MS); renewed every third of it.
  uploadLeaseMs: number;
};

export type BatchSource = "json" | "ndjson" | "csv";
export type BatchLineError = { line: number; field: string; message: string };

export type BatchIntakeResult = {
  batchId: string | undefined;
  accepted: number;
  rejected: number;
  credits: number;
  errors: BatchLineError[];
  errorsTruncated: boolean;
  spendCapReached: boolean;
  images: number;
};

// Errors kept for the answer; the count of every rejected line is kept in any case.
const MAX_REPORTED_ERRORS = 1_000;

export const newIntakeResult = (): BatchIntakeResult => ({
  batchId: undefined,
  accepted: 0,
  rejected: 0,
  credits: 0,
  errors: [],
  errorsTruncated: false,
  spendCapReached: false,
  images: 0,
});

export const rejectLine = (result: BatchIntakeResult, line: number, violations: FieldViolation[]) => {
  result.rejected++;
  for (const v of violations) {
    if (result.errors.length < MAX_REPORTED_ERRORS) result.errors.push({ line, field: v.field, message: v.message });
    else result.errorsTruncated = true;
  }
};

// The batch row an intake creates (before its upload and counts).
export type BatchRow = { id: string; accountId: string; name: string | null; source: string; defaults: string | null; callbackUrl: string | null };

// An item validated and ready to be written (its inline image, if any, already stored).
export type Prepared = { id: string; line: number; request: ExpandRequest; inputName: string | undefined; inline?: { key: string; width: number; height: number } };

// How a batch's rows are written once acceptBatch created its row's values: in chunks that each
// commit (accept-batch.ts) or in one transaction (accept-batch-atomic.ts).
export type WriteBatch = (
  deps: AcceptBatchDeps,
  input: { accountId: string; items: AsyncIterable<RawItem> },
  result: BatchIntakeResult,
  batchRow: BatchRow,
  prepare: (raw: RawItem) => Promise<Prepared | undefined>,
  stallAt: () => Date,
) => Promise<BatchIntakeResult>;

export const capViolation = (cap: number, used: number): FieldViolation => ({
  field: "n",
  message: `would take the account past its spend cap of ${cap} credits (${used} spent or reserved)`,
});

export const emptyUpload = () => new AppError("validation_failed", "the upload has no items", { violations: [{ field: "body", message: "has no items (an empty file, or only a header row)" }] });

export const spendCapError = (result: BatchIntakeResult) =>
  new AppError("spend_cap_exceeded", `the batch would take the account past its spend cap; nothing was created (${result.errors.find((e) => e.message.includes("spend cap"))?.message ?? ""})`);

