import { createHash } from "node:crypto";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { answerOf, apiClient, apiFetch, type ApiTarget } from "./api-client.ts";
import { cliCommand, shellWord } from "./cli-name.ts";
import { CliError, exitCodes, usageError } from "./exit-codes.ts";
import type { Output } from "./watch-batch.ts";

const manifestImage = z.looseObject({
  index: z.number().int().min(0),
  url: z.string().nullish(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/).nullish(),
  width: z.number().nullish(),
  height: z.number().nullish(),
});

const manifestLine = z.looseObject({
  task_id: z.string().regex(/^[A-Za-z0-9-]{1,64}$/),
  line: z.number().int().nullish(),
  status: z.string(),
  images: z.array(manifestImage).nullish(),
});

type Wanted = { file: string; url: string; sha256: string | null | undefined };

const sha256Of = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

const extensionOf = (url: string) => {
  const ext = path.extname(new URL(url, "http://x").pathname).toLowerCase();
  return ext === ".jpg" || ext === ".jpeg" ? ".jpg" : ext === ".webp" ? ".webp" : ".png";
};

const manifestInput = z.looseObject({ input: z.string().nullish() });

// The stem a result is named after: the input's own file name (`p1.png` -> `p1`), as the manifest's
// `input` gives it, reduced to characters that are safe in a file name; undefined for inline images
// the manifest cannot name.
const inputStem = (input: string | null | undefined): string | undefined => {
  if (!input || input === "inline") return undefined;
  let name = input;
  try {
    name = decodeURIComponent(new URL(input).pathname);
  } catch {
    // not a URL: a file name or path as given
  }
  const base = path.basename(name.replaceAll("\\", "/")).replace(/\.[A-Za-z0-9]{1,5}$/, "");
  const safe = base.replace(/[^A-Za-z0-9._-]+/g, "_").replace(/^[._]+/, "").slice(0, 100);
  return safe === "" ? undefined : safe;
};

// Parses the NDJSON manifest into the images to fetch, named after their input (`p1.png` ->
// `p1_0.png`); a name two lines share gets the line number (`p1.line7_0.png`) on every line after
// the first, and an input without a name (inline Base64) is named by its line (`000007_0.png`), or
// by task id when the manifest gives no line. Ties are decided over every line, finished or not, so
// a name never changes between two runs of a download.
export const imagesInManifest = (text: string, apiUrl: string): Wanted[] => {
  const tasks: (z.output<typeof manifestLine> & { stem: string | undefined })[] = [];
  for (const [i, raw] of text.split("\n").entries()) {
    if (raw.trim() === "") continue;
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch {
      throw new CliError(exitCodes.api, `The manifest's line ${i + 1} is not JSON.`);
    }
    const parsed = manifestLine.safeParse(json);
    if (!parsed.success) throw new CliError(exitCodes.api, `The manifest's line ${i + 1} is not what this CLI expects: ${parsed.error.issues[0]?.message}`);
    tasks.push({ ...parsed.data, stem: inputStem(manifestInput.safeParse(json).data?.input) });
  }
  const seen = new Set<string>();
  const wanted: Wanted[] = [];
  for (const task of tasks) {
    const fallback = task.line ? String(task.line).padStart(6, "0") : task.task_id;
    let stem = task.stem ?? fallback;
    if (task.stem !== undefined) {
      if (seen.has(task.stem)) stem = `${task.stem}.line${task.line ?? task.task_id}`;
      seen.add(task.stem);
    }
    if (task.status !== "succeeded") continue;
    for (const image of task.images ?? []) {
      const url = new URL(image.url ?? `/v1/tasks/${task.task_id}/images/${image.index}`, apiUrl).toString();
      wanted.push({ file: `${stem}_${image.index}${extensionOf(url)}`, url, sha256: image.sha256 });
    }
  }
  return wanted;
};

const alreadyThere = async (file: string, sha256: string | null | undefined) => {
  if (!sha256) return false;
  try {
    return sha256Of(await readFile(file)) === sha256;
  } catch {
    return false;
  }
};

// Fetches one image into place: written beside its final name, checked, then renamed, so a file
// under its final name is always complete and verified (that is what makes a re-run resume).
const fetchImage = async (target: ApiTarget, want: Wanted, dest: string, signal: AbortSignal) => {
  const sameOrigin = new URL(want.url).origin === new URL(target.apiUrl).origin;
  for (let attempt = 1; ; attempt++) {
    const response = sameOrigin ? await apiFetch(target, want.url, { signal }) : await fetch(want.url, { signal });
    if (!response.ok) throw new CliError(exitCodes.api, `Downloading ${want.file} answered ${response.status}.`);
    const bytes = Buffer.from(await response.arrayBuffer());
    if (want.sha256 && sha256Of(bytes) !== want.sha256) {
      if (attempt < 2) continue;
      throw new CliError(exitCodes.verification, `${want.file}: sha256 ${sha256Of(bytes)} does not match the manifest's ${want.sha256}.`);
    }
    const part = `${dest}.part`;
    await writeFile(part, bytes);
    await rename(part, dest);
    return;
  }
};

export type DownloadSummary = { manifest: string; images: number; fetched: number; skipped: number; failed: { file: string; reason: string; exitCode: number }[] };

export const downloadBatch = async (target: ApiTarget, batchId: string, outDir: string, out: Output, concurrency: number): Promise<DownloadSummary> => {
  try {
    await mkdir(outDir, { recursive: true });
  } catch (error) {
    throw usageError(`Cannot use ${outDir} as the output folder (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}).`);
  }
  const manifestText = await answerOf(
    apiClient(target).GET("/v1/batches/{batchId}/results", {
      params: { path: { batchId }, query: { format: "ndjson" } },
      headers: { accept: "application/x-ndjson" },
      parseAs: "text",
    }),
  );
  const manifest = path.join(outDir, "manifest.ndjson");
  await writeFile(`${manifest}.part`, manifestText);
  await rename(`${manifest}.part`, manifest);
  const wanted = imagesInManifest(manifestText, target.apiUrl);

  const summary: DownloadSummary = { manifest, images: wanted.length, fetched: 0, skipped: 0, failed: [] };
  // Ctrl-C: the images being fetched are dropped (their .part files removed); every file under its
  // final name is complete and verified, so running the same command again resumes.
  const abort = new AbortController();
  const onSigint = () => abort.abort();
  process.once("SIGINT", onSigint);
  let next = 0;
  const report = () => {
    if (out.isTTY) out.write(`\r  images ${summary.fetched + summary.skipped + summary.failed.length}/${wanted.length} (${summary.skipped} already there)\u001b[K`);
  };
  const worker = async () => {
    while (next < wanted.length && !abort.signal.aborted) {
      const want = wanted[next++]!;
      const dest = path.join(outDir, want.file);
      if (await alreadyThere(dest, want.sha256)) summary.skipped++;
      else {
        try {
          await fetchImage(target, want, dest, abort.signal);
          summary.fetched++;
        } catch (error) {
          await rm(`${dest}.part`, { force: true });
          if (abort.signal.aborted) return;
          if (!(error instanceof CliError) || error.exitCode === exitCodes.unreachable) throw error;
          summary.failed.push({ file: want.file, reason: error.message, exitCode: error.exitCode });
          if (!out.isTTY) out.write(`error: ${error.message}\n`);
        }
      }
      report();
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
  } finally {
    process.removeListener("SIGINT", onSigint);
  }
  if (out.isTTY && wanted.length) out.write("\n");
  if (abort.signal.aborted) {
    const saved = summary.fetched + summary.skipped;
    throw new CliError(
      exitCodes.interrupted,
      `Interrupted: ${saved} of ${wanted.length} image(s) are saved in ${path.resolve(outDir)} (with manifest.ndjson), each complete and checked against its sha256; the other ${wanted.length - saved} are not.`,
      `Resume with the same command (saved images are kept, the rest fetched):\n  ${cliCommand()} download ${batchId} --out ${shellWord(outDir)}`,
    );
  }
  return summary;
};
