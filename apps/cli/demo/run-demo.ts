import { spawn } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { demoScenes, renderScene } from "./demo-images.ts";

// `npm run demo`: the first thing a new user runs. With the stack from `npm start` up, it draws a
// few pictures, submits them (and one picture by URL) as one batch through the CLI, shows the
// progress bars to the end, and downloads the expanded images and the manifest into a folder it names.
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const apiUrl = (process.env.API_URL ?? "http://127.0.0.1:3000").replace(/\/+$/, "");
const apiKey = process.env.API_KEY ?? "local-dev-key-0123456789";
const simulatorUrl = (process.env.SIMULATOR_URL ?? "http://127.0.0.1:3100").replace(/\/+$/, "");
const tty = process.stdout.isTTY === true && !process.env.NO_COLOR;
const bold = (s: string) => (tty ? `\u001b[1m${s}\u001b[0m` : s);
const green = (s: string) => (tty ? `\u001b[32m${s}\u001b[0m` : s);
const yellow = (s: string) => (tty ? `\u001b[33m${s}\u001b[0m` : s);
const say = (s = "") => process.stdout.write(`${s}\n`);

const stackNotRunning = (why: string) => {
  say();
  say(yellow(bold("The orchestrator is not running yet.")));
  say(`  (nothing answered at ${apiUrl}: ${why})`);
  say();
  say("  Start it in another terminal, from this folder:");
  say(bold("      npm start"));
  say("  wait for its `[stack] ready` block, then run this again:");
  say(bold("      npm run demo"));
  say();
  say("  Elsewhere? Point the demo at it with API_URL=... and API_KEY=...");
  process.exit(4);
};

const checkStack = async () => {
  try {
    const health = await fetch(`${apiUrl}/healthz`, { signal: AbortSignal.timeout(5_000) });
    if (!health.ok) stackNotRunning(`/healthz answered ${health.status}`);
  } catch (error) {
    const cause = (error as { cause?: { code?: string; errors?: { code?: string }[] } }).cause;
    stackNotRunning(cause?.code ?? cause?.errors?.[0]?.code ?? (error as Error).message);
  }
  const auth = await fetch(`${apiUrl}/v1/batches?limit=1`, { headers: { authorization: `Bearer ${apiKey}` } });
  if (auth.status === 401) {
    say(yellow(bold(`The API at ${apiUrl} refused the key ${apiKey}.`)));
    say("  `npm start` prints its key in the ready block; run the demo with API_KEY=<that key> npm run demo.");
    process.exit(3);
  }
  if (auth.status === 404) {
    say(yellow(bold(`The API at ${apiUrl} has no batch routes (/v1/batches): is it an older version of this project?`)));
    process.exit(3);
  }
};

// The simulator draws pictures too; used as the "image by URL" item when it is the provider.
const simulatorSample = async () => {
  const url = `${simulatorUrl}/_sim/sample.png?width=640&height=400`;
  try {
    return (await fetch(url, { signal: AbortSignal.timeout(3_000) })).ok ? url : undefined;
  } catch {
    return undefined;
  }
};

// Ctrl-C reaches the CLI too (same terminal): it says how to resume, and the demo ends with it.
process.on("SIGINT", () => undefined);

// Runs the CLI in this terminal; `capture` keeps its stdout (the batch id of `submit --no-watch`).
const runCli = (args: string[], capture = false) =>
  new Promise<{ code: number; stdout: string }>((resolve) => {
    const child = spawn(process.execPath, [path.join(root, "apps/cli/kling-expand.mjs"), ...args], {
      stdio: ["inherit", capture ? "pipe" : "inherit", "inherit"],
      env: { ...process.env, API_URL: apiUrl, API_KEY: apiKey },
    });
    let stdout = "";
    child.stdout?.on("data", (d) => (stdout += d));
    child.on("close", (code) => resolve({ code: code ?? 1, stdout }));
  });

const show = (args: string[]) => say(bold(`$ kling-expand ${args.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(" ")}`));

await checkStack();
const stamp = new Date().toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
const folder = path.join(root, "var", "demo", stamp);
const inputDir = path.join(folder, "input");
const resultsDir = path.join(folder, "results");
await mkdir(inputDir, { recursive: true });

say(bold("kling-expand demo"));
say(`  Drawing ${demoScenes.length} pictures into ${path.relative(process.cwd(), inputDir) || inputDir} ...`);
const items: Record<string, unknown>[] = [];
for (const scene of demoScenes) {
  await writeFile(path.join(inputDir, scene.file), await renderScene(scene.svg, scene.file));
  items.push({ image: scene.file });
}
// Items may override the batch's settings: one asks for two variants, one for a taller canvas.
items[1] = { ...items[1], n: 2, prompt: "a wide green meadow" };
items[2] = { ...items[2], up_expansion_ratio: 0.3, down_expansion_ratio: 0.3, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1 };
const sample = await simulatorSample();
if (sample) items.push({ image: sample });
const batchFile = path.join(inputDir, "batch.ndjson");
await writeFile(batchFile, items.map((i) => JSON.stringify(i)).join("\n") + "\n");
say(`  The batch: ${path.relative(process.cwd(), batchFile)} (${items.length} items: local files sent inline${sample ? ", one image by URL" : ""})`);
say();

const submitArgs = ["submit", path.relative(process.cwd(), batchFile), "--up", "0.15", "--down", "0.15", "--left", "0.25", "--right", "0.25", "--name", `demo ${stamp}`];
show([...submitArgs, "--no-watch"]);
const submitted = await runCli([...submitArgs, "--no-watch"], true);
const batchId = submitted.stdout.trim();
if (submitted.code !== 0 && submitted.code !== 1) process.exit(submitted.code);
say();
show(["watch", batchId]);
const watched = await runCli(["watch", batchId]);
if (watched.code !== 0 && watched.code !== 1) process.exit(watched.code);
say();
show(["download", batchId, "--out", path.relative(process.cwd(), resultsDir)]);
const downloaded = await runCli(["download", batchId, "--out", resultsDir]);
if (downloaded.code !== 0) process.exit(downloaded.code);

say();
say(green(bold("Done.")) + " Your expanded images and the manifest are in:");
say(bold(`  ${resultsDir}`));
say(`  manifest.ndjson has one line per input: status, each image's size and sha256, credits.`);
say(`  (The pictures that went in are in ${inputDir}.)`);
say(`  Your own pictures next:  npm run cli -- submit <folder> --left 0.3 --right 0.3`);
say(`  Everything the CLI does:  npm run cli -- --help`);
process.exit(Math.max(submitted.code, watched.code));
