import { Router } from "express";
import { withTimeout } from "../../domain/async/with-timeout.ts";
import { tasksByRoute } from "../../domain/task/route-costs.repository.ts";
import { routeCredits } from "../../domain/credits/credit-totals.ts";
import type { ApiDeps } from "../api-deps.ts";
import { authenticate } from "../middleware/authenticate.ts";
import { problemDetailsHandler } from "../middleware/error-handlers.ts";
import { methodNotAllowed } from "../middleware/method-not-allowed.ts";
import { describeRoute } from "../presenters/provider-routes.presenter.ts";
import type { ProviderRouteUsageView } from "../presenters/provider-routes.schema.ts";

// GET /v1/provider/routes: each route's state (as /readyz shows it) and what the caller's tasks
// cost on it. A route no longer configured still shows its tasks and costs.
export const providerRoutesRouter = (deps: ApiDeps): Router => {
  const router = Router();
  router.use(authenticate(deps.authenticator));
  router.get("/", async (_req, res) => {
    const [states, costs, credits] = await Promise.all([
      withTimeout(Promise.all(deps.providerRoutes.all.map((r, i) => describeRoute(r, i + 1))), 2_000, "provider state").catch(() => undefined),
      tasksByRoute(deps.db, res.locals.accountId),
      routeCredits(deps.db, { accountId: res.locals.accountId }),
    ]);
    // Rows from before routes existed ran on the preferred route.
    const nameOf = (route: string | null) => route ?? deps.providerRoutes.all[0]!.route.name;
    const names = [...new Set([...deps.providerRoutes.all.map((r) => r.route.name), ...costs.map((c) => nameOf(c.route))])];
    res.json({
      data: names.map((name): ProviderRouteUsageView => {
        const mine = costs.filter((c) => nameOf(c.route) === name);
        // Holds of tasks no route has taken yet are not any route's.
        const money = credits.filter((c) => c.route !== null && nameOf(c.route) === name);
        const cost = money.some((c) => c.cost !== null) ? Math.round(money.reduce((a, c) => a + (c.cost ?? 0), 0) * 1e6) / 1e6 : null;
        return {
          name,
          configured: deps.providerRoutes.all.some((r) => r.route.name === name),
          state: states?.find((s) => s.name === name) ?? null,
          tasks: mine.reduce((a, c) => a + c.tasks, 0),
          succeeded: mine.reduce((a, c) => a + c.succeeded, 0),
          failed: mine.reduce((a, c) => a + c.failed, 0),
          slot_tasks: mine.reduce((a, c) => a + c.slotTasks, 0),
          credits_spent: money.reduce((a, c) => a + c.spent, 0),
          credits_reserved: money.reduce((a, c) => a + c.reserved, 0),
          cost,
        };
      }),
    });
  });
  router.all("/", methodNotAllowed("GET"));
  router.use(problemDetailsHandler(deps.logger));
  return router;
};
