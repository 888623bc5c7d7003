import type { Selectable } from "kysely";
import type { DB, TaskStatus } from "../db/database.ts";

// What a batch is and how far it has got: read by the repository, shown by the presenter (their own
// home, so that neither has to import the other for it).
export type Batch = Selectable<DB["batch"]>;
export type BatchEndStatus = "completed" | "completed_with_errors" | "canceled";
export type BatchStatus = "receiving" | "running" | BatchEndStatus;

export type BatchProgress = {
  batch: Batch;
  status: BatchStatus;
  counts: Record<TaskStatus, number>;
  total: number;
  finished: number;
  percent: number;
  creditsSpent: number;
  // Credits still held by the batch's unfinished tasks (the ledger's open holds).
  creditsReserved: number;
  throughputPerSecond: number | null;
  etaSeconds: number | null;
  firstSubmittedAt: Date | null;
  lastFinishedAt: Date | null;
};
