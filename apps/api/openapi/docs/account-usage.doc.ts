import { accountCostsAnswerSchema, accountCostsQuerySchema, accountUsageQuerySchema, accountUsageSchema } from "../../presenters/account-usage.schema.ts";
import { accountAuth, json, problemResponses, providerErrorResponses, type RouteDoc } from "../route-doc.ts";

export const accountUsageDocs: RouteDoc[] = [
  {
    method: "get",
    path: "/v1/account/usage",
    operation: {
      operationId: "getAccountUsage",
      tags: ["account"],
      summary: "The account's credits from the ledger: spent, reserved and cap now; charges of a period by route and by day",
      description:
        "Every task holds its expected credits (n × CREDITS_PER_IMAGE) from intake until it ends, then is charged the provider's final_unit_deduction (or released when nothing was charged). spent + reserved never exceeds the cap. A month's invoice: `?from=2026-12-01&to=2027-01-01` (docs/money.md).",
      security: accountAuth,
      requestParams: { query: accountUsageQuerySchema },
      responses: { "200": json(accountUsageSchema, "The account's usage"), ...problemResponses("validation_failed", "unauthenticated", "dependency_unavailable") },
    },
  },
  {
    method: "get",
    path: "/account/costs",
    operation: {
      operationId: "getAccountCosts",
      tags: ["drop-in (Kling paths)"],
      summary: "Kling's account costs route (resource packs and balance), answered from the credit ledger",
      description:
        "Served at the root as Kling serves it, in Kling's shape and error shape: the spend cap is one decreasing_total resource pack (total = cap, remaining = cap - spent - reserved); no cap, no pack (as a pay-as-you-go Kling account). `consumption` is ours: credits charged within the window.",
      security: accountAuth,
      requestParams: { query: accountCostsQuerySchema },
      responses: { "200": json(accountCostsAnswerSchema, "Packs and consumption"), ...providerErrorResponses(400, 401, 503) },
    },
  },
];
