import { createNativeClient, type NativeClient } from "../client/native-client.ts";
import { CliError, exitCodes } from "./exit-codes.ts";

export type ApiTarget = { apiUrl: string; apiKey: string };

type Problem = { title?: string; detail?: string; errors?: { field: string; message: string }[] };

// `body` is what came back: parsed JSON when it was JSON (as openapi-fetch hands an error over), text otherwise.
const describeProblem = (status: number, body: unknown) => {
  if (typeof body === "object" && body !== null) {
    const problem = body as Problem;
    const fields = problem.errors?.map((e) => `\n  ${e.field}: ${e.message}`).join("") ?? "";
    return `${problem.detail ?? problem.title ?? `HTTP ${status}`}${fields}`;
  }
  const text = typeof body === "string" ? body : "";
  return `HTTP ${status}${text ? `: ${text.slice(0, 200)}` : ""}`;
};

const unreachable = (target: ApiTarget, error: unknown) => {
  const cause = (error as { cause?: { code?: string; message?: string; errors?: { code?: string }[] } }).cause;
  const why = cause?.code ?? cause?.errors?.[0]?.code ?? cause?.message ?? (error as Error).message;
  return new CliError(
    exitCodes.unreachable,
    `Cannot reach the API at ${target.apiUrl} (${why}).`,
    `Is the stack running? Start it in another terminal with \`npm start\` (it listens on http://127.0.0.1:3000),\nor point the CLI elsewhere with --api-url / API_URL.`,
  );
};

// An error answer becomes a CliError with the API's own words; a refused key is said plainly, since
// it is the most common first mistake.
const refusal = (status: number, body: unknown) => {
  if (status === 401) {
    return new CliError(exitCodes.api, `The API refused the key (401): ${describeProblem(status, body)}`, "Set API_KEY or --api-key (npm start prints the local key).");
  }
  if (status === 404) return new CliError(exitCodes.api, `Not found (404): ${describeProblem(status, body)}`);
  return new CliError(exitCodes.api, `The API answered ${status}: ${describeProblem(status, body)}`);
};

const parsedIfJson = (text: string): unknown => {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
};

const reachingFetch =
  (target: ApiTarget) =>
  async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    try {
      return await fetch(input, init);
    } catch (error) {
      if ((error as Error).name === "AbortError") throw error;
      throw unreachable(target, error);
    }
  };

// The typed client (paths and answers generated from /openapi.json), with the CLI's wording for a
// network failure.
export const apiClient = (target: ApiTarget): NativeClient => createNativeClient({ baseUrl: target.apiUrl, apiKey: target.apiKey, fetch: reachingFetch(target) });

// The answer of a typed call, or the CliError that says why there is none.
export const answerOf = async <T>(call: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> => {
  const { data, error, response } = await call;
  if (!response.ok) throw refusal(response.status, error);
  if (data === undefined) throw new CliError(exitCodes.api, `The API answered ${response.status} with no body.`);
  return data;
};

// A raw request, for what openapi-fetch does not model: image bytes at the URLs the manifest names.
export const apiFetch = async (target: ApiTarget, url: string, init: RequestInit = {}): Promise<Response> => {
  const headers = new Headers(init.headers);
  headers.set("authorization", `Bearer ${target.apiKey}`);
  const response = await reachingFetch(target)(new URL(url, target.apiUrl), { ...init, headers });
  if (response.ok) return response;
  throw refusal(response.status, parsedIfJson(await response.text().catch(() => "")));
};
