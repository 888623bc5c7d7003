// npm run bench:batch-memory: how much the API process grows while it takes a batch, as resident
// memory (peak VmHWM over the idle VmRSS, from /proc) of an API in its own process. A measurement,
// not a test: it prints figures and exits non-zero only if a run breaks.
//
// Knobs: BENCH_MEMORY_FORMS (ndjson,json,inline; `inline`: a JSON batch of Base64 PNGs of
// BENCH_MEMORY_INLINE_PX px, default 600, ~1 MB each, of the same sizes), BENCH_MEMORY_HEAPS (default,small; also `v8`: the API
// with API_HEAP_GROWING_PERCENT=0, V8's own heap growth; `growing<N>`: with API_HEAP_GROWING_PERCENT=N).
// Runs: NDJSON streams of BENCH_MEMORY_NDJSON_ITEMS (default "100000,200000") URL items; JSON
// batches of 10,000 items of about each of BENCH_MEMORY_JSON_MB (default "28"; e.g. "5,15,28") MB.
// Each on a fresh API process, once per heap setting; `small` is --max-old-space-size=
// BENCH_MEMORY_SMALL_HEAP_MB (default 128): if the small heap takes the same batch, the growth is
// garbage V8 had not yet collected, not memory the intake holds.
import pg from "pg";
import { createBenchAccount } from "./api-fill.ts";
import { startBenchStack } from "./api-stack.ts";
import { batchRatios, jsonBatchBody, jsonInlineBatchBody, measureGrowth, postBatch } from "./batch-memory-kit.ts";

const ndjsonCounts = (process.env.BENCH_MEMORY_NDJSON_ITEMS ?? "100000,200000").split(",").map(Number);
const jsonMbs = (process.env.BENCH_MEMORY_JSON_MB ?? "28").split(",").map(Number);
const smallHeapMb = Number(process.env.BENCH_MEMORY_SMALL_HEAP_MB ?? 128);
type Heap = "default" | "small" | "v8" | `growing${number}`;
const heaps = (process.env.BENCH_MEMORY_HEAPS ?? "default,small").split(",") as Heap[];
const forms = (process.env.BENCH_MEMORY_FORMS ?? "ndjson,json,inline").split(",");
const inlinePx = Number(process.env.BENCH_MEMORY_INLINE_PX ?? 600);
const item = (i: number) => JSON.stringify({ image: `https://images.example.com/photos/product-${i}.jpg`, ...batchRatios, prompt: `item ${i}` });

const log = (line: string) => process.stderr.write(`${line}\n`);

// Generated as the socket drains: the client holds ~64 KB at most.
const streamNdjson = (apiUrl: string, key: string, count: number) =>
  postBatch(apiUrl, key, "application/x-ndjson", "/v1/batches?name=memory", (req) => {
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

type Run = { label: string; bodyMb: number; send: (apiUrl: string, key: string) => ReturnType<typeof postBatch> };

const measure = async (run: Run, heap: Heap) => {
  // Intake waits longer for Redis than in production: a loaded machine must not end the run with a 503.
  const base = { ...process.env, ENQUEUE_TIMEOUT_MS: process.env.ENQUEUE_TIMEOUT_MS ?? "20000" };
  const env =
    heap === "small"
      ? { ...base, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --max-old-space-size=${smallHeapMb}`.trim() }
      : heap === "v8"
        ? { ...base, API_HEAP_GROWING_PERCENT: "0" }
        : heap.startsWith("growing")
          ? { ...base, API_HEAP_GROWING_PERCENT: heap.slice("growing".length) }
          : base;
  const stack = await startBenchStack(env);
  const pool = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 });
  try {
    const { key } = await createBenchAccount(pool);
    // Warm-up: the first requests compile and connect.
    await streamNdjson(stack.apiUrl, key, 2_000);
    await new Promise((r) => setTimeout(r, 2_000));
    const { answer, idleMb: idle, growthMb, seconds } = await measureGrowth(stack.apiPid, () => run.send(stack.apiUrl, key));
    const accepted = answer.status === 201 ? JSON.parse(answer.body).intake.accepted : undefined;
    const line = `${run.label} heap=${heap}: status ${answer.status}${accepted !== undefined ? `, accepted ${accepted}` : `: ${answer.body.slice(0, 200)}`}, idle ${idle.toFixed(0)} MB, peak +${growthMb.toFixed(0)} MB (${(growthMb / run.bodyMb).toFixed(1)}x the ${run.bodyMb.toFixed(1)} MB body), ${seconds.toFixed(1)} s`;
    log(line);
    return { label: run.label, heap, status: answer.status, growthMb, bodyMb: run.bodyMb };
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
  if (forms.includes("json"))
    for (const mb of jsonMbs) {
      const json = jsonBatchBody(mb);
      runs.push({
        label: `json ${json.count} items ${mb} MB`,
        bodyMb: json.body.length / 1024 / 1024,
        send: (apiUrl, key) => postBatch(apiUrl, key, "application/json", "/v1/batches", (req) => req.end(json.body)),
      });
    }
  if (forms.includes("inline"))
    for (const mb of jsonMbs) {
      const json = await jsonInlineBatchBody(mb, inlinePx);
      runs.push({
        label: `json inline ${json.count} images ${mb} MB`,
        bodyMb: json.body.length / 1024 / 1024,
        send: (apiUrl, key) => postBatch(apiUrl, key, "application/json", "/v1/batches", (req) => req.end(json.body)),
      });
    }
  const results = [];
  for (const run of runs) for (const heap of heaps) results.push(await measure(run, heap));
  for (const r of results) console.log(`${r.label.replaceAll(" ", "_")} heap=${r.heap} status=${r.status} growth_mb=${r.growthMb.toFixed(0)} body_mb=${r.bodyMb.toFixed(1)} ratio=${(r.growthMb / r.bodyMb).toFixed(2)}`);
};

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
