import { CliError, exitCodes } from "./exit-codes.ts";

export type ApiTarget = { apiUrl: string; apiKey: string };

type Problem = { title?: string; detail?: string; errors?: { field: string; message: string }[] };

const describeProblem = (status: number, body: string) => {
  try {
    const problem = JSON.parse(body) as Problem;
    const fields = problem.errors?.map((e) => `\n  ${e.field}: ${e.message}`).join("") ?? "";
    return `${problem.detail ?? problem.title ?? `HTTP ${status}`}${fields}`;
  } catch {
    return `HTTP ${status}${body ? `: ${body.slice(0, 200)}` : ""}`;
  }
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

// One request to the API. Error answers become a CliError with the API's own words; a refused key is
// said plainly, since it is the most common first mistake.
export const apiFetch = async (target: ApiTarget, path: string, init: RequestInit & { duplex?: "half" } = {}): Promise<Response> => {
  const headers = new Headers(init.headers);
  headers.set("authorization", `Bearer ${target.apiKey}`);
  let response: Response;
  try {
    response = await fetch(new URL(path, target.apiUrl), { ...init, headers });
  } catch (error) {
    if ((error as Error).name === "AbortError") throw error;
    throw unreachable(target, error);
  }
  if (response.ok) return response;
  const body = await response.text().catch(() => "");
  if (response.status === 401) {
    throw new CliError(exitCodes.api, `The API refused the key (401): ${describeProblem(response.status, body)}`, "Set API_KEY or --api-key (npm start prints the local key).");
  }
  if (response.status === 404) throw new CliError(exitCodes.api, `Not found (404): ${describeProblem(response.status, body)}`);
  throw new CliError(exitCodes.api, `The API answered ${response.status}: ${describeProblem(response.status, body)}`);
};

export const apiJson = async <T>(target: ApiTarget, path: string, init: RequestInit = {}): Promise<T> => {
  const response = await apiFetch(target, path, init);
  return (await response.json()) as T;
};
