// A thin client over the public HTTP API, as a caller would use it.
export type ApiAnswer<T = any> = { status: number; body: T; headers: Headers };

export const call = async <T = any>(
  baseUrl: string,
  method: string,
  path: string,
  options: { key?: string; body?: unknown; rawBody?: string; headers?: Record<string, string> } = {},
): Promise<ApiAnswer<T>> => {
  const headers: Record<string, string> = { ...options.headers };
  if (options.key) headers.authorization = `Bearer ${options.key}`;
  let body: string | undefined;
  if (options.rawBody !== undefined) body = options.rawBody;
  else if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers["content-type"] = "application/json";
  }
  const response = await fetch(new URL(path, baseUrl), { method, headers, body });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: response.status, body: parsed as T, headers: response.headers };
};

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const finalStatuses = ["succeeded", "failed", "canceled"];

// Waits for a task to reach one of the given statuses with long-polls (`?wait=`), as a client that
// will not poll does: a read is answered when the status changes (at once for an ended task).
// A long-poll waits for a change from the status the server reads, so when a status we wait for is
// not final, a plain read comes first each round and the long-poll is kept to a second: a status
// entered between the two reads is then still seen unless it lasts under a second.
export const waitForTask = async (
  baseUrl: string,
  key: string,
  taskId: string,
  statuses: string[],
  timeoutMs = 20_000,
): Promise<any> => {
  const deadline = Date.now() + timeoutMs;
  const onlyFinal = statuses.every((s) => finalStatuses.includes(s));
  let last: { status: number; body: any } | undefined;
  const read = async (waitSeconds: number) => {
    const answer = await call(baseUrl, "GET", `/v1/tasks/${taskId}${waitSeconds > 0 ? `?wait=${waitSeconds}` : ""}`, { key });
    last = { status: answer.status, body: answer.body };
    return answer;
  };
  while (Date.now() < deadline) {
    if (!onlyFinal && statuses.includes((await read(0)).body?.status)) return last!.body;
    const left = Math.ceil((deadline - Date.now()) / 1000);
    const answer = await read(Math.max(1, Math.min(onlyFinal ? 20 : 1, left)));
    if (statuses.includes(answer.body?.status)) return answer.body;
    // Not a task answer (the account's long-poll places are taken, the database is down in a fault
    // test): the next read would be answered at once, so pause before it.
    if (answer.status !== 200) await pause(100);
  }
  const state = last?.status === 200 ? `it was ${last.body?.status}` : `the last read answered ${last?.status}`;
  throw new Error(`task ${taskId} did not reach ${statuses.join("|")} within ${timeoutMs} ms: ${state}; last seen: ${JSON.stringify(last?.body)}`);
};
