// npm run bench:batch-memory: how much the API process grows while it takes a batch, as resident
// memory (peak VmHWM over the idle VmRSS, from /proc) of an API in its own process. A measurement,
// not a test: it prints figures and exits non-zero only if a run breaks.
//
// Knobs: BENCH_MEMORY_FORMS (ndjson,json), BENCH_MEMORY_HEAPS (default,small; also `v8`: the API
// with API_HEAP_GROWING_PERCENT=0, V8's own heap growth, the figure before that setting).
// Runs: NDJSON streams of BENCH_MEMORY_NDJSON_ITEMS (default "100000,200000") URL items; a JSON
// batch of about BENCH_MEMORY_JSON_MB (default 28) MB of URL items. Each on a fresh API process, once
// as configured and once with a small V8 heap (--max-old-space-size=BENCH_MEMORY_SMALL_HEAP_MB,
// default 128): if the small heap takes the same batch, the growth is garbage V8 had not yet
// collected, not memory the intake holds.
import { request } from "node:http";
import { readFile } from "node:fs/promises";
import pg from "pg";
import { createBenchAccount } from "./api-fill.ts";
import { startBenchStack } from "./api-stack.ts";

const ndjsonCounts = (process.env.BENCH_MEMORY_NDJSON_ITEMS ?? "100000,200000").split(",").map(Number);
const jsonMb = Number(process.env.BENCH_MEMORY_JSON_MB ?? 28);
const smallHeapMb = Number(process.env.BENCH_MEMORY_SMALL_HEAP_MB ?? 128);
type Heap = "default" | "small" | "v8";
const heaps = (process.env.BENCH_MEMORY_HEAPS ?? "default,small").split(",") as Heap[];
const forms = (process.env.BENCH_MEMORY_FORMS ?? "ndjson,json").split(",");
const ratios = { up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.2, right_expansion_ratio: 0.2 };
const item = (i: number) => JSON.stringify({ image: `https://images.example.com/photos/product-${i}.jpg`, ...ratios, prompt: `item ${i}` });

const log = (line: string) => process.stderr.write(`${line}\n`);

const memoryMb = async (pid: number) => {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)![1]) / 1024;
  return { rss: kb("VmRSS"), peak: kb("VmHWM") };
};

const post = (apiUrl: string, key: string, contentType: string, path: string, write: (req: ReturnType<typeof request>) => void): Promise<{ status: number; body: string }> =>
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

// Generated as the socket drains: the client holds ~64 KB at most.
const streamNdjson = (apiUrl: string, key: string, count: number) =>
  post(apiUrl, key, "application/x-ndjson", "/v1/batches?name=memory", (req) => {
    let i = 0;
    const pump = () => {
      while (i < count) {
        let text = "";
        for (let k = 0; k < 200 && i < count; k++, i++) text += `${item(i)}\n`;
        if (!req.write(text)) return void req.once("drain", pump);
      }
      req.end();
    };
    pump();
  });

// The JSON form takes at most 10,000 items: a body of this size has long items (prompts near their
// 2,500-character limit), as the 28 MB batch of the report had.
const jsonBody = (megabytes: number) => {
  const count = 10_000;
  const promptChars = Math.min(2_400, Math.max(10, Math.floor((megabytes * 1024 * 1024) / count) - 200));
  const items = Array.from({ length: count }, (_, i) =>
    JSON.stringify({ image: `https://images.example.com/photos/product-${i}.jpg`, ...ratios, prompt: `item ${i} ${"a wider view ".repeat(promptChars / 13)}`.slice(0, promptChars) }),
  );
  return { body: `{"name":"memory","items":[${items.join(",")}]}`, count };
};

type Run = { label: string; bodyMb: number; send: (apiUrl: string, key: string) => Promise<{ status: number; body: string }> };

const measure = async (run: Run, heap: Heap) => {
  // Intake waits longer for Redis than in production: a loaded machine must not end the run with a 503.
  const base = { ...process.env, ENQUEUE_TIMEOUT_MS: process.env.ENQUEUE_TIMEOUT_MS ?? "20000" };
  const env =
    heap === "small"
      ? { ...base, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --max-old-space-size=${smallHeapMb}`.trim() }
      : heap === "v8"
        ? { ...base, API_HEAP_GROWING_PERCENT: "0" }
        : base;
  const stack = await startBenchStack(env);
  const pool = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 });
  try {
    const { key } = await createBenchAccount(pool);
    // Warm-up: the first requests compile and connect.
    await streamNdjson(stack.apiUrl, key, 2_000);
    await new Promise((r) => setTimeout(r, 2_000));
    await readFile(`/proc/${stack.apiPid}/status`);
    const { writeFile } = await import("node:fs/promises");
    await writeFile(`/proc/${stack.apiPid}/clear_refs`, "5");
    const idle = (await memoryMb(stack.apiPid)).rss;
    const started = performance.now();
    const answer = await run.send(stack.apiUrl, key);
    const seconds = (performance.now() - started) / 1000;
    const { peak } = await memoryMb(stack.apiPid);
    const accepted = answer.status === 201 ? JSON.parse(answer.body).intake.accepted : undefined;
    const line = `${run.label} heap=${heap}: status ${answer.status}${accepted !== undefined ? `, accepted ${accepted}` : `: ${answer.body.slice(0, 200)}`}, idle ${idle.toFixed(0)} MB, peak +${(peak - idle).toFixed(0)} MB (${((peak - idle) / run.bodyMb).toFixed(1)}x the ${run.bodyMb.toFixed(1)} MB body), ${seconds.toFixed(1)} s`;
    log(line);
    return { label: run.label, heap, status: answer.status, growthMb: peak - idle, bodyMb: run.bodyMb };
  } finally {
    await pool.end();
    await stack.stop();
  }
};

const main = async () => {
  const runs: Run[] = (forms.includes("ndjson") ? ndjsonCounts : []).map((count) => ({
    label: `ndjson ${count} items`,
    bodyMb: (count * (item(count).length + 1)) / 1024 / 1024,
    send: (apiUrl, key) => streamNdjson(apiUrl, key, count),
  }));
  const json = jsonBody(jsonMb);
  if (forms.includes("json")) runs.push({
    label: `json ${json.count} items`,
    bodyMb: json.body.length / 1024 / 1024,
    send: (apiUrl, key) => post(apiUrl, key, "application/json", "/v1/batches", (req) => req.end(json.body)),
  });
  const results = [];
  for (const run of runs) for (const heap of heaps) results.push(await measure(run, heap));
  for (const r of results) console.log(`${r.label.replaceAll(" ", "_")} heap=${r.heap} status=${r.status} growth_mb=${r.growthMb.toFixed(0)} body_mb=${r.bodyMb.toFixed(1)} ratio=${(r.growthMb / r.bodyMb).toFixed(2)}`);
};

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
