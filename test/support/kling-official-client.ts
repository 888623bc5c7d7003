import { createHmac } from "node:crypto";

// A client for Kling's official API as a user would write it from Kling's documentation: it signs
// its own JWT with node:crypto (no JOSE library), calls base_url + /v1/images/editing/expand with
// fetch, and knows nothing about this project. Pointing base_url at us is the only change.

// What it needs from fetch: the built-in one, or undici's with an Agent that trusts a private CA.
export type FetchLike = (
  url: string,
  init: { method: string; headers: Record<string, string>; body?: string },
) => Promise<{ status: number; text(): Promise<string>; arrayBuffer(): Promise<ArrayBuffer> }>;

export type KlingClientOptions = { baseUrl: string; accessKey: string; secretKey: string; fetch?: FetchLike };

// The provider's envelope ({code, message, request_id, data}), and the HTTP status it came with.
export type KlingAnswer<T = any> = { status: number; code: number; message: string; request_id: string; data: T };

const base64url = (value: string | Buffer) => Buffer.from(value).toString("base64url");

// Kling's documented recipe: header {alg: HS256, typ: JWT}, payload {iss: access key,
// exp: now + 1800, nbf: now - 5}, HMAC-SHA256 with the secret key.
export const signKlingJwt = (accessKey: string, secretKey: string, nowSeconds = Math.floor(Date.now() / 1000)) => {
  const header = base64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const payload = base64url(JSON.stringify({ iss: accessKey, exp: nowSeconds + 1800, nbf: nowSeconds - 5 }));
  const signature = createHmac("sha256", secretKey).update(`${header}.${payload}`).digest("base64url");
  return `${header}.${payload}.${signature}`;
};

export const createKlingClient = (options: KlingClientOptions) => {
  const doFetch: FetchLike = options.fetch ?? ((url, init) => fetch(url, init));
  const endpoint = `${options.baseUrl.replace(/\/$/, "")}/v1/images/editing/expand`;

  const request = async <T>(method: string, url: string, body?: unknown): Promise<KlingAnswer<T>> => {
    const headers: Record<string, string> = { authorization: `Bearer ${signKlingJwt(options.accessKey, options.secretKey)}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    const response = await doFetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await response.text();
    let envelope: Omit<KlingAnswer<T>, "status">;
    try {
      envelope = JSON.parse(text);
    } catch {
      throw new Error(`${method} ${url} answered ${response.status} with a body that is not JSON: ${text.slice(0, 200)}`);
    }
    return { status: response.status, ...envelope };
  };

  return {
    create: (body: Record<string, unknown>) => request<any>("POST", endpoint, body),
    // Kling: "use either task_id or external_task_id".
    get: (taskIdOrExternalId: string) => request<any>("GET", `${endpoint}/${encodeURIComponent(taskIdOrExternalId)}`),
    list: (page: { pageNum?: number | string; pageSize?: number | string } = {}) => {
      const query = new URLSearchParams();
      if (page.pageNum !== undefined) query.set("pageNum", String(page.pageNum));
      if (page.pageSize !== undefined) query.set("pageSize", String(page.pageSize));
      return request<any[]>("GET", `${endpoint}?${query}`);
    },
    // Polls as Kling's examples do, until the task ends or the deadline passes.
    waitUntilDone: async (taskId: string, timeoutMs = 20_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const answer = await request<any>("GET", `${endpoint}/${encodeURIComponent(taskId)}`);
        if (answer.code !== 0) throw new Error(`polling ${taskId} failed: ${JSON.stringify(answer)}`);
        if (answer.data.task_status === "succeed" || answer.data.task_status === "failed") return answer;
        if (Date.now() > deadline) throw new Error(`task ${taskId} did not end within ${timeoutMs} ms; last: ${JSON.stringify(answer.data)}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
    // Result URLs need no Authorization header, as the provider's own do.
    download: async (url: string) => {
      const response = await doFetch(url, { method: "GET", headers: {} });
      return { status: response.status, bytes: Buffer.from(await response.arrayBuffer()) };
    },
  };
};

export type KlingClient = ReturnType<typeof createKlingClient>;
