import { z } from "zod";
import { metrics, providerCodeLabel } from "../metrics/metrics.ts";
import { inProviderSpan } from "../telemetry/tracing.ts";
import type { ExpansionRatios } from "../expand-request/expand-limits.ts";
import { signKlingJwt } from "./kling-jwt.ts";
import type { ProviderConfig } from "./provider-config.schema.ts";
import { providerErrorAction } from "./provider-error-codes.ts";
import { ProviderError } from "./provider-error.ts";
import {
  providerEnvelopeSchema,
  providerErrorBodySchema,
  providerTaskSchema,
  type ProviderTask,
} from "./provider-wire.schema.ts";

export type ProviderCreateInput = {
  image: string;
  ratios: ExpansionRatios;
  prompt?: string | null;
  n: number;
  watermark?: boolean | null;
  externalTaskId: string;
  callbackUrl: string;
};

export type ProviderClient = {
  readonly kind: ProviderConfig["kind"];
  createTask(input: ProviderCreateInput): Promise<ProviderTask>;
  getTask(providerTaskId: string): Promise<ProviderTask>;
  // Kling's get accepts "either task_id or external_task_id"; undefined when the provider has none.
  findTaskByExternalId(externalTaskId: string): Promise<ProviderTask | undefined>;
};

const taskEnvelope = providerEnvelopeSchema(providerTaskSchema);
const listEnvelope = providerEnvelopeSchema(z.array(providerTaskSchema));
const LIST_PAGE_SIZE = 500;
const LIST_PAGES_SCANNED = 4;

const NOT_SENT_CODES = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN"]);

const describeFetchFailure = (cause: unknown) => {
  const inner = (cause as Error).cause as { code?: string; message?: string } | undefined;
  return inner?.code ? `${(cause as Error).message} (${inner.code})` : (cause as Error).message;
};

const parseRetryAfter = (header: string | null): number | undefined => {
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
};

type ProviderOperation = "create" | "get" | "get_by_external_id" | "list";

export const createProviderClient = (config: ProviderConfig): ProviderClient => {
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
    let response: Response;
    try {
      response = await inProviderSpan(operation, (traceHeaders) =>
        fetch(url, {
          method,
          headers: { ...traceHeaders, authorization: authorization(), "content-type": "application/json", accept: "application/json" },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(config.timeoutMs),
        }),
      );
    } catch (cause) {
      // A refused or unresolvable connection carried no request: nothing can have been created.
      const notSent = NOT_SENT_CODES.has(((cause as Error).cause as { code?: string } | undefined)?.code ?? "");
      metrics.providerCalls.inc({ operation, code: "network" });
      throw new ProviderError(`provider ${method} failed before an answer: ${describeFetchFailure(cause)}`, {
        action: "retry",
        outcomeUnknown: method === "POST" && !notSent,
        notSent,
      });
    }
    let text: string;
    try {
      text = await response.text();
    } catch (cause) {
      throw new ProviderError(`provider answer was cut off: ${(cause as Error).message}`, {
        action: "retry",
        httpStatus: response.status,
        outcomeUnknown: method === "POST",
      });
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (response.ok) {
      const parsed = envelope.safeParse(json);
      if (parsed.success && parsed.data.code === 0) {
        metrics.providerCalls.inc({ operation, code: "0" });
        return parsed.data.data;
      }
    }
    const error = providerErrorBodySchema.safeParse(json);
    const code = error.success ? error.data.code : undefined;
    metrics.providerCalls.inc({ operation, code: providerCodeLabel(code ?? undefined, response.status) });
    if (code === 1303) metrics.providerParallelLimit.inc();
    const message = error.success && error.data.message ? error.data.message : text.slice(0, 200) || response.statusText;
    const action = response.ok && code === undefined ? "retry" : providerErrorAction(code, response.status);
    throw new ProviderError(`provider answered HTTP ${response.status} code ${code ?? "none"}: ${message}`, {
      action,
      httpStatus: response.status,
      code,
      // A 200 whose body we cannot read may still have created the task.
      outcomeUnknown: method === "POST" && response.ok,
      retryAfterMs: parseRetryAfter(response.headers.get("retry-after")),
    });
  };

  return {
    kind: config.kind,
    createTask: (input) =>
      call("create", "POST", route, taskEnvelope, {
        image: input.image,
        up_expansion_ratio: input.ratios.up,
        [`${config.downField}_expansion_ratio`]: input.ratios.down,
        left_expansion_ratio: input.ratios.left,
        right_expansion_ratio: input.ratios.right,
        ...(input.prompt ? { prompt: input.prompt } : {}),
        n: input.n,
        ...(input.watermark === null || input.watermark === undefined
          ? {}
          : { watermark_info: { enabled: input.watermark } }),
        external_task_id: input.externalTaskId,
        callback_url: input.callbackUrl,
      }),
    getTask: (providerTaskId) => call("get", "GET", `${route}/${encodeURIComponent(providerTaskId)}`, taskEnvelope),
    findTaskByExternalId: async (externalTaskId) => {
      const notFound = (error: unknown) =>
        error instanceof ProviderError &&
        (error.details.code === 1203 || error.details.code === 1202 || (error.details.httpStatus === 404 && error.details.code !== null));
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
    },
  };
};
