import type { ZodOpenApiPathItemObject } from "zod-openapi";
import { accountWebhookDocs } from "./docs/account-webhooks.doc.ts";
import { batchDocs } from "./docs/batches.doc.ts";
import { dropinDocs } from "./docs/dropin.doc.ts";
import { inboundDocs } from "./docs/inbound.doc.ts";
import { nativeTaskDocs } from "./docs/native-tasks.doc.ts";
import { operationsDocs } from "./docs/operations.doc.ts";
import { outboundWebhookDocs } from "./docs/outbound-webhooks.doc.ts";
import { providerRouteDocs } from "./docs/provider-routes.doc.ts";
import { accountUsageDocs } from "./docs/account-usage.doc.ts";
import type { RouteDoc } from "./route-doc.ts";

// THE list of what the API serves, feeding /openapi.json, /docs and the typed client
// (apps/client/). To add routes: write `docs/<area>.doc.ts` exporting a `RouteDoc[]` (request
// schemas imported from the route or the domain, response schemas from presenters/*.schema.ts),
// and add it below. test/api/openapi-contract.test.ts fails while an Express route has no entry
// here, or an entry has no route. Then `npm run client:generate` refreshes the client's types.
export const routeDocs: RouteDoc[] = [
  ...nativeTaskDocs,
  ...dropinDocs,
  ...inboundDocs,
  ...batchDocs,
  ...accountWebhookDocs,
  ...providerRouteDocs,
  ...accountUsageDocs,
  ...operationsDocs,
];

// Mounted third-party apps documented as one entry: the coverage test does not look inside them.
export const opaqueMounts = ["/admin/queues"];

// Callbacks we send, by event type (OpenAPI 3.1 `webhooks`).
export const webhookDocs: Record<string, ZodOpenApiPathItemObject> = {
  ...outboundWebhookDocs,
};
