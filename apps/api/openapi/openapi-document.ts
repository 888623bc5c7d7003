import { createDocument, type ZodOpenApiOperationObject, type ZodOpenApiPathsObject } from "zod-openapi";
import { routeDocs, webhookDocs } from "./route-catalog.ts";

// An operation that names no credential is public (probes, provider callbacks with their per-task
// token, signed image links, the callbacks we send): it says so with `security: []` rather than
// leaving a reader (or a generated client) to guess.
const publicUnlessSecured = (operation: ZodOpenApiOperationObject): ZodOpenApiOperationObject =>
  operation.security ? operation : { ...operation, security: [] };

const buildDocument = () => {
  const paths: ZodOpenApiPathsObject = {};
  for (const { method, path, operation } of routeDocs) {
    if (paths[path]?.[method]) throw new Error(`route documented twice: ${method.toUpperCase()} ${path}`);
    paths[path] = { ...paths[path], [method]: publicUnlessSecured(operation) };
  }
  const webhooks = Object.fromEntries(
    Object.entries(webhookDocs).map(([name, item]) => [name, { ...item, ...(item.post ? { post: publicUnlessSecured(item.post) } : {}) }]),
  );
  return createDocument({
    openapi: "3.1.0",
    info: {
      title: "Kling image expansion orchestrator",
      version: "1",
      description:
        "Native API (`/v1/tasks`, problem details on errors) and drop-in routes that answer like the provider (`/kling/v1/images/editing/expand`, `/v1/images/editing/expand`). Authenticate with `Authorization: Bearer <API key>` or with a Kling-style JWT signed with an access key's secret.",
    },
    servers: [{ url: "/" }],
    tags: [
      { name: "tasks", description: "Native API" },
      { name: "drop-in (Kling paths)", description: "The provider's routes and shapes" },
      { name: "drop-in (CometAPI paths)", description: "The same, under CometAPI's paths" },
      { name: "batches", description: "Many tasks at once: intake (JSON, NDJSON, CSV), progress, results, cancel, retry" },
      { name: "webhooks", description: "The account's outbound callbacks: signing secret, deliveries, redelivery" },
      { name: "provider routes", description: "The provider routes (PROVIDER_ROUTES): state and the account's costs on each" },
      { name: "provider callbacks", description: "Called by the provider" },
      { name: "outbound callbacks", description: "What we send to callback_url" },
      { name: "operations", description: "Probes, metrics, docs, dashboard, queue board" },
    ],
    paths,
    webhooks,
    components: {
      securitySchemes: {
        apiKey: { type: "http", scheme: "bearer", description: "An account API key (npm run api-key:create)" },
        metricsToken: { type: "http", scheme: "bearer", description: "METRICS_TOKEN, when the operator set one (GET /metrics only)" },
        klingJwt: {
          type: "http",
          scheme: "bearer",
          bearerFormat: "JWT",
          description: "HS256 JWT signed with an access key's secret key, iss = access key, exp/nbf as Kling's clients sign (npm run access-key)",
        },
      },
    },
  });
};

export type OpenApiDocument = ReturnType<typeof buildDocument>;

let built: OpenApiDocument | undefined;
// Built once per process, on first use: the schemas do not change while it runs.
export const openApiDocument = (): OpenApiDocument => (built ??= buildDocument());
