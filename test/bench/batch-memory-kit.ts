// How much an API process grows while it takes one batch: peak resident memory (VmHWM) over the
// idle VmRSS, read from /proc, for `npm run bench:batch-memory`.
import { request } from "node:http";
import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";

export const batchRatios = { up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.2, right_expansion_ratio: 0.2 };

export const residentMb = async (pid: number) => {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)![1]) / 1024;
  return { rss: kb("VmRSS"), peak: kb("VmHWM") };
};

export type Answer = { status: number; body: string };

export const postBatch = (apiUrl: string, key: string, contentType: string, path: string, write: (req: ReturnType<typeof request>) => void): Promise<Answer> =>
  new Promise((resolve, reject) => {
    const req = request(new URL(path, apiUrl), { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": contentType } });
    req.on("error", reject);
    req.on("response", (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString("utf8")));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    write(req);
  });

// A JSON batch of about `megabytes` MB. The JSON form takes at most 10,000 items, so a large body
// has long items: prompts up to their 2,500-character limit and long image URLs, as the 28 MB batch
// of the report had. Returned as bytes: the sender's copy is not the API's concern.
export const jsonBatchBody = (megabytes: number) => {
  const count = 10_000;
  const perItem = Math.max(120, Math.floor((megabytes * 1024 * 1024) / count) - 12);
  const promptChars = Math.min(2_500, Math.max(10, perItem - 200));
  const pathChars = Math.min(1_500, Math.max(0, perItem - 200 - promptChars));
  const items = Array.from({ length: count }, (_, i) =>
    JSON.stringify({
      image: `https://images.example.com/photos/${"p".repeat(pathChars)}/product-${i}.jpg`,
      ...batchRatios,
      prompt: `item ${i} ${"a wider view ".repeat(Math.ceil(promptChars / 13))}`.slice(0, promptChars),
    }),
  );
  return { body: Buffer.from(`{"name":"memory","items":[${items.join(",")}]}`), count };
};

// The API's growth while `send` runs: the idle resident size after a settle, the high-water mark
// reset (clear_refs 5) so that only this batch's peak counts.
export const measureGrowth = async (apiPid: number, send: () => Promise<Answer>) => {
  await writeFile(`/proc/${apiPid}/clear_refs`, "5");
  const idle = (await residentMb(apiPid)).rss;
  const started = performance.now();
  const answer = await send();
  const seconds = (performance.now() - started) / 1000;
  const { peak } = await residentMb(apiPid);
  return { answer, idleMb: idle, growthMb: peak - idle, seconds };
};

// A JSON batch of about `megabytes` MB of inline Base64 PNGs of `side` x `side` px whose pixels are
// noise (so that PNG cannot shrink them: ~1 MB each at 600 px), as a client sends photos inline.
export const jsonInlineBatchBody = async (megabytes: number, side = 600) => {
  const sharp = (await import("sharp")).default;
  const pixels = randomBytes(side * side * 3);
  const image = (await sharp(pixels, { raw: { width: side, height: side, channels: 3 } }).png({ compressionLevel: 1 }).toBuffer()).toString("base64");
  const item = (i: number) => JSON.stringify({ image, ...batchRatios, prompt: `inline item ${i}` });
  const count = Math.max(1, Math.round((megabytes * 1024 * 1024) / (item(0).length + 1)));
  const items = Array.from({ length: count }, (_, i) => item(i));
  return { body: Buffer.from(`{"name":"memory-inline","items":[${items.join(",")}]}`), count };
};
