import { z } from "zod";
import { validationError } from "../errors/app-error.ts";

// What intake needs to know about money and capacity, built once per process from the env.
export type CreditTerms = {
  // Credits a task is expected to cost per result image (CREDITS_PER_IMAGE): what intake holds.
  perImage: number;
  // BATCH_SPEND_CAP_CREDITS: the cap of accounts without their own spend_cap_credits.
  defaultCap: number | undefined;
  // The largest capacity among the configured provider routes: a task holds n slots on one route,
  // so an n above it can never run.
  maxRouteCapacity: number;
  // REPLAY_WINDOW_SECONDS: the replay window of accounts without their own (0: off).
  replayWindowSeconds: number;
};

export const creditsEnv = {
  // Opt-in protection from blind retries (docs/money.md): an identical create without
  // external_task_id within this many seconds answers the first task. 0: off. An account's own
  // replay_window_seconds overrides it.
  REPLAY_WINDOW_SECONDS: z.coerce.number().int().min(0).max(86_400).default(0),
};

export const aboveCapacityMessage = (n: number, max: number) =>
  `is ${n}, above the capacity of every configured provider route (the largest holds ${max} slots at once, and a task holds n of them on one route): no route could ever run it`;

// A task no route can run is refused at intake rather than accepted and failed later.
export const refuseAboveCapacity = (terms: CreditTerms, n: number) => {
  if (n > terms.maxRouteCapacity) throw validationError([{ field: "n", message: aboveCapacityMessage(n, terms.maxRouteCapacity) }]);
};
