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

// Waits for a task to reach one of the given statuses by reading it the way a polling client does.
export const waitForTask = async (
  baseUrl: string,
  key: string,
  taskId: string,
  statuses: string[],
  timeoutMs = 20_000,
): Promise<any> => {
  const deadline = Date.now() + timeoutMs;
  let last: any;
  while (Date.now() < deadline) {
    const answer = await call(baseUrl, "GET", `/v1/tasks/${taskId}`, { key });
    last = answer.body;
    if (statuses.includes(last?.status)) return last;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`task ${taskId} did not reach ${statuses.join("|")} within ${timeoutMs} ms; last seen: ${JSON.stringify(last)}`);
};
