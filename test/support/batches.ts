import { request } from "node:http";

// Streams a body to POST /v1/batches (chunked), as a bulk client would.
export const postBatchStream = async (
  baseUrl: string,
  key: string,
  body: string | Iterable<string>,
  options: { contentType?: string; query?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: any; headers: Record<string, string | string[] | undefined> }> => {
  const url = new URL(`/v1/batches${options.query ? `?${options.query}` : ""}`, baseUrl);
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": options.contentType ?? "application/x-ndjson", ...options.headers },
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on("data", (c: Buffer) => parts.push(c));
        res.on("end", () => {
          const text = Buffer.concat(parts).toString("utf8");
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // keep text
          }
          resolve({ status: res.statusCode ?? 0, body: parsed, headers: res.headers });
        });
      },
    );
    req.on("error", reject);
    const write = async () => {
      if (typeof body === "string") req.end(body);
      else {
        let pending = "";
        for (const piece of body) {
          pending += piece;
          if (pending.length > 64 * 1024) {
            if (!req.write(pending)) await new Promise((r) => req.once("drain", r));
            pending = "";
          }
        }
        req.end(pending);
      }
    };
    write().catch(reject);
  });
};

export function* ndjsonLines(count: number, item: (i: number) => Record<string, unknown>): Generator<string> {
  for (let i = 1; i <= count; i++) yield `${JSON.stringify(item(i))}\n`;
}

export const waitUntil = async <T>(read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 20_000, what = "condition"): Promise<T> => {
  const deadline = Date.now() + timeoutMs;
  let last: T;
  do {
    last = await read();
    if (done(last)) return last;
    await new Promise((r) => setTimeout(r, 100));
  } while (Date.now() < deadline);
  throw new Error(`${what} not reached within ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
};

// A streamed upload the test writes piece by piece (as a slow or dying client would): the answer
// comes when the server gives one, which may be before the body is ended.
export const openBatchUpload = (baseUrl: string, key: string, query = "") => {
  const req = request(new URL(`/v1/batches${query ? `?${query}` : ""}`, baseUrl), {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/x-ndjson" },
  });
  const answer = new Promise<{ status: number; body: any } | { error: Error }>((resolve) => {
    req.on("error", (error) => resolve({ error }));
    req.on("response", (res) => {
      const parts: Buffer[] = [];
      res.on("data", (c: Buffer) => parts.push(c));
      res.on("end", () => {
        const text = Buffer.concat(parts).toString("utf8");
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) });
        } catch {
          resolve({ status: res.statusCode ?? 0, body: text });
        }
      });
      res.on("error", (error) => resolve({ error }));
    });
  });
  return {
    write: (lines: Iterable<string>) => new Promise<void>((resolve) => (req.write([...lines].join(""), () => resolve()))),
    end: () => req.end(),
    answer,
  };
};
