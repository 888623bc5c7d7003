import { Router } from "express";
import { accountBalance } from "../../domain/credits/credit-ledger.ts";
import { accountUsage, dailyCredits } from "../../domain/credits/credit-totals.ts";
import { validationError } from "../../domain/errors/app-error.ts";
import type { ApiDeps } from "../api-deps.ts";
import { authenticate } from "../middleware/authenticate.ts";
import { problemDetailsHandler, providerErrorHandler } from "../middleware/error-handlers.ts";
import { methodNotAllowed } from "../middleware/method-not-allowed.ts";
import { parseInput } from "./parse-request.ts";
import { accountCostsQuerySchema, accountUsageQuerySchema, type AccountCostsAnswer, type AccountUsageView } from "../presenters/account-usage.schema.ts";

const MAX_PERIOD_DAYS = 366;
const DAY_MS = 86_400_000;

const monthStart = (now: Date, offset: number) => new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + offset, 1));

// The period asked for, by default the current UTC month.
const periodOf = (query: unknown) => {
  const parsed = parseInput(accountUsageQuerySchema, query, "query");
  const now = new Date();
  const from = parsed.from ? new Date(parsed.from) : monthStart(now, 0);
  const to = parsed.to ? new Date(parsed.to) : monthStart(now, 1);
  if (to <= from) throw validationError([{ field: "to", message: "must be after from" }]);
  if (to.getTime() - from.getTime() > MAX_PERIOD_DAYS * DAY_MS) throw validationError([{ field: "to", message: `the period may span at most ${MAX_PERIOD_DAYS} days` }]);
  return { from, to };
};

const round6 = (value: number) => Math.round(value * 1e6) / 1e6;

// GET /v1/account/usage: the account's money from the credit ledger (docs/money.md).
export const accountUsageRouter = (deps: ApiDeps): Router => {
  const router = Router();
  router.use(authenticate(deps.authenticator));
  router.get("/usage", async (req, res) => {
    const { from, to } = periodOf(req.query);
    const accountId = res.locals.accountId;
    const usage = await accountUsage(deps.db, accountId, from, to, deps.intake.credits.defaultCap);
    const { spent, reserved, cap } = usage.balance;
    const view: AccountUsageView = {
      account_id: accountId,
      unit: "credits",
      cap: cap ?? null,
      spent,
      reserved,
      available: cap === undefined ? null : round6(cap - spent - reserved),
      period: {
        from: from.toISOString(),
        to: to.toISOString(),
        spent: usage.period.spent,
        cost: usage.period.cost,
        settled_tasks: usage.period.settledTasks,
        released_tasks: usage.period.releasedTasks,
      },
      by_route: usage.byRoute.map((r) => ({ route: r.route, tasks: r.tasks, settled_tasks: r.settledTasks, spent: r.spent, reserved: r.reserved, cost: r.cost })),
      by_day: usage.byDay,
    };
    res.json(view);
  });
  router.all("/usage", methodNotAllowed("GET"));
  router.use(problemDetailsHandler(deps.logger));
  return router;
};

// GET /account/costs, at the root as Kling serves it (Kling's "query resource packs and balance"):
// a Kling SDK's health check calls it. The account's spend cap is its one resource pack
// (decreasing_total: total = cap, remaining = cap - spent - reserved); without a cap the list is
// empty, as for a pay-as-you-go Kling account. Kling lists packs bought within the window; ours has
// no purchase, so the window bounds only `consumption` (our addition).
export const accountCostsRouter = (deps: ApiDeps): Router => {
  const router = Router();
  router.use(authenticate(deps.authenticator));
  router.get("/costs", async (req, res) => {
    const { start_time: start, end_time: end, resource_pack_name: packName } = parseInput(accountCostsQuerySchema, req.query, "query");
    const accountId = res.locals.accountId;
    const [balance, days, account] = await Promise.all([
      accountBalance(deps.db, accountId, deps.intake.credits.defaultCap),
      dailyCredits(deps.db, accountId, new Date(start), new Date(end)),
      deps.db.selectFrom("account").select("createdAt").where("id", "=", accountId).executeTakeFirstOrThrow(),
    ]);
    const name = "orchestrator-spend-cap";
    const remaining = balance.cap === undefined ? 0 : Math.max(0, round6(balance.cap - balance.spent - balance.reserved));
    const packs: AccountCostsAnswer["data"]["resource_pack_subscribe_infos"] =
      balance.cap === undefined || (packName !== undefined && packName !== name)
        ? []
        : [
            {
              resource_pack_name: name,
              resource_pack_id: accountId,
              resource_pack_type: "decreasing_total",
              total_quantity: balance.cap,
              remaining_quantity: remaining,
              purchase_time: account.createdAt.getTime(),
              effective_time: account.createdAt.getTime(),
              // Never lapses.
              invalid_time: 0,
              status: remaining > 0 ? "online" : "runOut",
            },
          ];
    const answer: AccountCostsAnswer = {
      code: 0,
      message: "SUCCEED",
      request_id: res.locals.requestId,
      data: {
        code: 0,
        msg: "success",
        resource_pack_subscribe_infos: packs,
        consumption: {
          start_time: start,
          end_time: end,
          spent: round6(days.reduce((sum, d) => sum + d.spent, 0)),
          reserved: balance.reserved,
          tasks: days.reduce((sum, d) => sum + d.tasks, 0),
        },
      },
    };
    res.json(answer);
  });
  router.all("/costs", methodNotAllowed("GET"));
  router.use(providerErrorHandler(deps.logger));
  return router;
};
