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

// Under the API's default bound (LIVE_MAX_WAIT_SECONDS, 60) and any proxy's idle timeout.
const LONG_POLL_SECONDS = 20;

// Waits until a task is final (or `timeoutMs` passes) with long-polls (`?wait=`): each read is
// answered when the status changes, at once for a final task. For scripts and tests.
export const waitForTask = async (client: NativeClient, taskId: string, options: { timeoutMs?: number } = {}): Promise<NativeTask> => {
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  for (;;) {
    const waitSeconds = Math.max(0, Math.min(LONG_POLL_SECONDS, Math.ceil((deadline - Date.now()) / 1000)));
    const { data, error, response } = await client.GET("/v1/tasks/{taskId}", { params: { path: { taskId }, query: { wait: String(waitSeconds) } } });
    if (response.status === 429 && Date.now() < deadline) {
      // The account's long-poll places are all taken (LIVE_MAX_STREAMS_PER_ACCOUNT): wait for one.
      await new Promise((resolve) => setTimeout(resolve, 200));
      continue;
    }
    if (error) throw new Error(`task ${taskId}: ${error.detail}`);
    if (finalStatuses.has(data.status) || Date.now() >= deadline) return data;
  }
};
