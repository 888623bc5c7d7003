import { Ajv2020 } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { openApiDocument } from "../../apps/api/openapi/openapi-document.ts";

// Checks a real answer against the schema the OpenAPI document gives for that operation, status
// and media type (OpenAPI 3.1 schemas are JSON Schema 2020-12).
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats.default(ajv);
ajv.addSchema(openApiDocument(), "openapi");

const pointer = (...parts: string[]) => parts.map((p) => p.replaceAll("~", "~0").replaceAll("/", "~1")).join("/");

export const responseSchemaErrors = (method: string, path: string, status: number, mediaType: string, body: unknown): string[] => {
  const doc = openApiDocument();
  const response = doc.paths?.[path]?.[method.toLowerCase() as "get"]?.responses?.[String(status)];
  if (!response || !("content" in response) || !response.content?.[mediaType]) {
    return [`the document has no ${mediaType} answer ${status} for ${method} ${path}`];
  }
  const validate = ajv.getSchema(`openapi#/${pointer("paths", path, method.toLowerCase(), "responses", String(status), "content", mediaType, "schema")}`);
  if (!validate) return ["schema not found"];
  return validate(body) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message}`);
};

// Checks a callback body we sent against the document's `webhooks` entry for its event type.
export const webhookSchemaErrors = (eventType: string, body: unknown): string[] => {
  const doc = openApiDocument();
  const entry = doc.webhooks?.[eventType];
  if (!entry || !("post" in entry)) return [`the document has no webhook ${eventType}`];
  const validate = ajv.getSchema(`openapi#/${pointer("webhooks", eventType, "post", "requestBody", "content", "application/json", "schema")}`);
  if (!validate) return ["schema not found"];
  return validate(body) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message}`);
};

// Checks a request body against the JSON schema the document gives for that operation.
export const requestSchemaErrors = (method: string, path: string, body: unknown, mediaType = "application/json"): string[] => {
  const validate = ajv.getSchema(`openapi#/${pointer("paths", path, method.toLowerCase(), "requestBody", "content", mediaType, "schema")}`);
  if (!validate) return [`the document has no ${mediaType} request body for ${method} ${path}`];
  return validate(body) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message}`);
};
