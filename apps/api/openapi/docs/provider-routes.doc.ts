import { providerRoutesAnswerSchema } from "../../presenters/provider-routes.schema.ts";
import { accountAuth, json, problemResponses, type RouteDoc } from "../route-doc.ts";

export const providerRouteDocs: RouteDoc[] = [
  {
    method: "get",
    path: "/v1/provider/routes",
    operation: {
      operationId: "listProviderRoutes",
      tags: ["provider routes"],
      summary: "Each provider route's state (as /readyz shows it) and what the account's tasks cost on it",
      security: accountAuth,
      responses: { "200": json(providerRoutesAnswerSchema, "Configured routes in order, then routes no longer configured that ran tasks"), ...problemResponses("unauthenticated", "dependency_unavailable") },
    },
  },
];
