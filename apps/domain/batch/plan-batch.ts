import type { Db } from "../db/database.ts";
import { accountBalance } from "../credits/credit-ledger.ts";
import type { CreditTerms } from "../credits/credit-terms.ts";
import type { ProviderRouteSet } from "../provider-capacity/provider-route-set.ts";
import type { BatchIntakeResult } from "./batch-intake.ts";
import { itemCredits, parseBatchItem, type BatchDefaults } from "./batch-request.schema.ts";

export type BatchPlanDeps = { db: Db; providerRoutes: ProviderRouteSet; credits: CreditTerms; estimateRunMs: number };

// What a dry run tells besides the intake's counts: how long the batch would take behind the
// account's backlog at the installation's capacity, and where it would leave the spend cap.
export type BatchPlan = {
  estimatedDurationSeconds: number | null;
  providerSlots: number;
  runTimeMs: number;
  runTimeObserved: boolean;
  backlogImages: number;
  spendCap: { cap: number; spent: number; committed: number; wouldExceed: boolean } | undefined;
};

export const planBatch = async (deps: BatchPlanDeps, accountId: string, result: BatchIntakeResult): Promise<BatchPlan> => {
  const [runMs, balance] = await Promise.all([routesRunTimeMs(deps.providerRoutes), accountBalance(deps.db, accountId, deps.credits.defaultCap)]);
  const { cap } = balance;
  const spend = { spent: balance.spent, committed: balance.reserved };
  // Every route's slots work the backlog together (PROVIDER_ROUTES).
  const capacity = deps.providerRoutes.all.reduce((sum, r) => sum + r.route.capacity, 0);
  const runTimeMs = Math.round(runMs ?? deps.estimateRunMs);
  const backlogImages = deps.credits.perImage > 0 ? Math.round(spend.committed / deps.credits.perImage) : 0;
  return {
    estimatedDurationSeconds: estimateDurationSeconds(result.images, backlogImages, capacity, runTimeMs),
    providerSlots: capacity,
    runTimeMs,
    runTimeObserved: runMs !== undefined,
    backlogImages,
    spendCap: cap === undefined ? undefined : { cap, spent: spend.spent, committed: spend.committed, wouldExceed: spend.spent + spend.committed + result.credits > cap },
  };
};

// A JSON batch's cost, known before anything is read further: its valid items' credits (an invalid
// one is refused by line later, and costs nothing).
export const plannedCredits = (defaults: BatchDefaults, count: number, itemAt: (index: number) => unknown, perImage: number) => {
  let credits = 0;
  for (let i = 0; i < count; i++) {
    const item = itemAt(i);
    if (typeof item !== "object" || item === null || Array.isArray(item)) continue;
    const checked = parseBatchItem(defaults, item as Record<string, unknown>);
    if (checked.ok) credits += itemCredits(checked.request.n, perImage);
  }
  return credits;
};

// How long a batch would take at the account's capacity: its images and the account's unfinished
// ones ahead of it go through `capacity` slots, one provider run time per wave.
export const estimateDurationSeconds = (images: number, backlogImages: number, capacity: number, runMs: number) =>
  capacity <= 0 ? null : Math.ceil(Math.ceil((images + backlogImages) / capacity) * runMs / 1000);

// The routes' learnt run times, weighted by their capacity; undefined while none has been observed.
const routesRunTimeMs = async (routes: ProviderRouteSet): Promise<number | undefined> => {
  const known = (await Promise.all(routes.all.map(async (r) => ({ capacity: r.route.capacity, ms: await r.runTime.estimateMs() })))).filter(
    (r): r is { capacity: number; ms: number } => r.ms !== undefined,
  );
  const weight = known.reduce((sum, r) => sum + r.capacity, 0);
  return weight > 0 ? known.reduce((sum, r) => sum + r.ms * r.capacity, 0) / weight : undefined;
};
