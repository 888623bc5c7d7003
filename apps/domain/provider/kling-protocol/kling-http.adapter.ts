import { z } from "zod";
import { metrics, providerCodeLabel } from "../../metrics/metrics.ts";
import { inProviderSpan } from "../../telemetry/tracing.ts";
import type { ProviderAdapter, ProviderConfig } from "../provider-adapter.ts";
import { ProviderError, type ProviderErrorClass } from "../provider-error.ts";
import { classifyKlingError } from "./kling-error-codes.ts";
import { signKlingJwt } from "./kling-jwt.ts";
import { klingTaskToReport, mapKlingStatus, parseKlingCallback } from "./kling-report.ts";
import { createProviderTransport, ProviderTransportError, type ProviderAnswer } from "./provider-transport.ts";
import { klingEnvelopeSchema, klingErrorBodySchema, klingTaskSchema } from "./kling-wire.schema.ts";

// An adapter for a provider that speaks Kling's HTTP API (KLING.md): routes under
// {baseUrl}{pathPrefix}/v1/images/editing/expand, answers in {code, message, data} envelopes,
// errors as {code, message}. Each family builds its adapter here with what differs.
export type KlingHttpOptions = {
  // The error's code and message from a refusal's body: a wrapper may use its own shape.
  readError?: (body: unknown) => { code: number | null | undefined; message: string | undefined };
};

export const readKlingError = (body: unknown) => {
  const error = klingErrorBodySchema.safeParse(body);
  return error.success ? { code: error.data.code, message: error.data.message || undefined } : { code: undefined, message: undefined };
};

const taskEnvelope = klingEnvelopeSchema(klingTaskSchema);
const listEnvelope = klingEnvelopeSchema(z.array(klingTaskSchema));
const LIST_PAGE_SIZE = 500;
const LIST_PAGES_SCANNED = 4;

const NOT_SENT_CODES = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN"]);

const parseRetryAfter = (header: string | undefined): number | undefined => {
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
};

type ProviderOperation = "create" | "get" | "get_by_external_id" | "list";

export const createKlingHttpAdapter = (config: ProviderConfig, options: KlingHttpOptions = {}): ProviderAdapter => {
  const readError = options.readError ?? readKlingError;
  const transport = createProviderTransport(config.timeoutMs);
  const route = `${config.baseUrl.replace(/\/$/, "")}${config.pathPrefix}/v1/images/editing/expand`;

  const authorization = () =>
    config.auth.type === "bearer"
      ? `Bearer ${config.auth.token}`
      : `Bearer ${signKlingJwt(config.auth.accessKey, config.auth.secretKey)}`;

  const call = async <T>(
    operation: ProviderOperation,
    method: "GET" | "POST",
    url: string,
    envelope: z.ZodType<{ code: number; data: T }>,
    body?: unknown,
  ): Promise<T> => {
    let response: ProviderAnswer;
    try {
      response = await inProviderSpan(operation, (traceHeaders) =>
        transport.send(
          method,
          url,
          { ...traceHeaders, authorization: authorization(), "content-type": "application/json", accept: "application/json" },
          body === undefined ? undefined : JSON.stringify(body),
        ),
      );
    } catch (cause) {
      const failure = cause instanceof ProviderTransportError ? cause.details : { code: undefined, answered: false, status: undefined };
      if (failure.answered) {
        throw new ProviderError(`provider answer was cut off: ${(cause as Error).message}`, {
          action: "retry",
          httpStatus: failure.status,
          outcomeUnknown: method === "POST",
        });
      }
      // A refused or unresolvable connection carried no request: nothing can have been created.
      const notSent = NOT_SENT_CODES.has(failure.code ?? "");
      metrics.providerCalls.inc({ operation, code: "network" });
      const message = (cause as Error).message;
      throw new ProviderError(`provider ${method} failed before an answer: ${failure.code && !message.includes(failure.code) ? `${message} (${failure.code})` : message}`, {
        action: "retry",
        outcomeUnknown: method === "POST" && !notSent,
        notSent,
      });
    }
    const text = response.text;
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    const ok = response.status >= 200 && response.status < 300;
    if (ok) {
      const parsed = envelope.safeParse(json);
      if (parsed.success && parsed.data.code === 0) {
        metrics.providerCalls.inc({ operation, code: "0" });
        return parsed.data.data;
      }
    }
    const error = readError(json);
    const code = error.code;
    metrics.providerCalls.inc({ operation, code: providerCodeLabel(code ?? undefined, response.status) });
    const message = error.message ?? (text.slice(0, 200) || response.statusText);
    // A 200 whose body we cannot read: the provider meant to answer; try again.
    const classified: ProviderErrorClass = ok && code === undefined ? { action: "retry" } : classifyKlingError({ httpStatus: response.status, code, message });
    if (classified.reason === "parallel_limit") metrics.providerParallelLimit.inc();
    throw new ProviderError(`provider answered HTTP ${response.status} code ${code ?? "none"}: ${message}`, {
      ...classified,
      httpStatus: response.status,
      code,
      // A 200 whose body we cannot read may still have created the task.
      outcomeUnknown: method === "POST" && ok,
      retryAfterMs: parseRetryAfter(response.retryAfter),
    });
  };

  // Kling's get accepts "either task_id or external_task_id"; how is UNCONFIRMED (the config says).
  const findTask = async (externalTaskId: string) => {
    // Only the provider's own word says there is no such task: a 404 carrying a code. A 404 without
    // one (the route's own {"code": null}, or a body we cannot read, e.g. a proxy's HTML page) says
    // nothing about the task; taking it for "not there" would create, and pay for, the task again.
    const notFound = (error: unknown) =>
      error instanceof ProviderError && (error.details.reason === "task_unknown" || (error.details.httpStatus === 404 && typeof error.details.code === "number"));
    try {
      switch (config.externalIdLookup) {
        case "path":
          return await call("get_by_external_id", "GET", `${route}/${encodeURIComponent(externalTaskId)}`, taskEnvelope);
        case "query": {
          const found = await call("list", "GET", `${route}?external_task_id=${encodeURIComponent(externalTaskId)}`, listEnvelope);
          return found.find((t) => t.task_info?.external_task_id === externalTaskId);
        }
        case "list":
          // Newest first: a task from an attempt moments ago is on the first page.
          for (let page = 1; page <= LIST_PAGES_SCANNED; page++) {
            const tasks = await call("list", "GET", `${route}?pageNum=${page}&pageSize=${LIST_PAGE_SIZE}`, listEnvelope);
            const match = tasks.find((t) => t.task_info?.external_task_id === externalTaskId);
            if (match || tasks.length < LIST_PAGE_SIZE) return match;
          }
          return undefined;
        case "none":
          return undefined;
      }
    } catch (error) {
      if (notFound(error)) return undefined;
      throw error;
    }
  };

  return {
    kind: config.kind,
    create: async (input) =>
      klingTaskToReport(
        await call("create", "POST", route, taskEnvelope, {
          image: input.image,
          up_expansion_ratio: input.ratios.up,
          [`${config.downField}_expansion_ratio`]: input.ratios.down,
          left_expansion_ratio: input.ratios.left,
          right_expansion_ratio: input.ratios.right,
          ...(input.prompt ? { prompt: input.prompt } : {}),
          n: input.n,
          ...(input.watermark === null || input.watermark === undefined ? {} : { watermark_info: { enabled: input.watermark } }),
          external_task_id: input.externalTaskId,
          callback_url: input.callbackUrl,
        }),
      ),
    get: async (providerTaskId) => klingTaskToReport(await call("get", "GET", `${route}/${encodeURIComponent(providerTaskId)}`, taskEnvelope)),
    findByExternalId: async (externalTaskId) => {
      const found = await findTask(externalTaskId);
      return found && klingTaskToReport(found);
    },
    parseCallback: parseKlingCallback,
    classifyError: classifyKlingError,
    mapStatus: mapKlingStatus,
  };
};
