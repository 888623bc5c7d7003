import { tmpdir } from "node:os";
import type { CreditTerms } from "../../apps/domain/credits/credit-terms.ts";
import { createLocalStorage } from "../../apps/domain/storage/local-storage.ts";
import type { Db } from "../../apps/domain/db/database.ts";
import type { AcceptTaskDeps } from "../../apps/domain/task/accept-task.ts";

// A create that only writes its rows (the ledger tests' subject): no queue behind it, no callback
// URL or image URL refused, and a stall recheck far beyond any test.
export const rowsOnlyAcceptDeps = (db: Db, credits: CreditTerms): AcceptTaskDeps => ({
  db,
  storage: createLocalStorage(tmpdir()),
  enqueueFirstJob: async () => async () => undefined,
  withdrawFirstJob: async () => undefined,
  stallRecheckMs: 60_000,
  checkCallbackUrl: async () => undefined,
  imageUrlRefusal: () => undefined,
  credits,
});
