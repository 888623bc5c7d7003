import createClient, { type Client } from "openapi-fetch";
import type { components, paths } from "./openapi-types.ts";

// A typed client for the native API, its types generated from /openapi.json (openapi-types.ts):
// paths, parameters, bodies and answers are checked at compile time against what the API
// documents. Used by the tests (and the CLI).
export type NativeClient = Client<paths>;
export type NativeTask = components["schemas"]["NativeTask"];
export type Problem = components["schemas"]["Problem"];

export const createNativeClient = (options: { baseUrl: string; apiKey: string; fetch?: typeof fetch }): NativeClient =>
  createClient<paths>({
    baseUrl: options.baseUrl.replace(/\/$/, ""),
    headers: { authorization: `Bearer ${options.apiKey}` },
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });

const finalStatuses = new Set<NativeTask["status"]>(["succeeded", "failed", "canceled"]);

// Polls a task until it is final (or `timeoutMs` passes): for scripts and tests.
export const waitForTask = async (client: NativeClient, taskId: string, options: { timeoutMs?: number; everyMs?: number } = {}): Promise<NativeTask> => {
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  for (;;) {
    const { data, error } = await client.GET("/v1/tasks/{taskId}", { params: { path: { taskId } } });
    if (error) throw new Error(`task ${taskId}: ${error.detail}`);
    if (finalStatuses.has(data.status) || Date.now() > deadline) return data;
    await new Promise((resolve) => setTimeout(resolve, options.everyMs ?? 100));
  }
};
