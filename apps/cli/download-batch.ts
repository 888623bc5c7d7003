import { createHash } from "node:crypto";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { answerOf, apiClient, apiFetch, type ApiTarget } from "./api-client.ts";
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

// Parses the NDJSON manifest into the images to fetch, named `<line>_<index>.<ext>` (the input's
// line, so names sort in input order), or `<task id>_<index>` when the manifest gives no line.
export const imagesInManifest = (text: string, apiUrl: string): Wanted[] => {
  const wanted: Wanted[] = [];
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
    const task = parsed.data;
    if (task.status !== "succeeded") continue;
    const stem = task.line ? String(task.line).padStart(6, "0") : task.task_id;
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
const fetchImage = async (target: ApiTarget, want: Wanted, dest: string) => {
  const sameOrigin = new URL(want.url).origin === new URL(target.apiUrl).origin;
  for (let attempt = 1; ; attempt++) {
    const response = sameOrigin ? await apiFetch(target, want.url) : await fetch(want.url);
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
  let next = 0;
  const report = () => {
    if (out.isTTY) out.write(`\r  images ${summary.fetched + summary.skipped + summary.failed.length}/${wanted.length} (${summary.skipped} already there)\u001b[K`);
  };
  const worker = async () => {
    while (next < wanted.length) {
      const want = wanted[next++]!;
      const dest = path.join(outDir, want.file);
      if (await alreadyThere(dest, want.sha256)) summary.skipped++;
      else {
        try {
          await fetchImage(target, want, dest);
          summary.fetched++;
        } catch (error) {
          await rm(`${dest}.part`, { force: true });
          if (!(error instanceof CliError) || error.exitCode === exitCodes.unreachable) throw error;
          summary.failed.push({ file: want.file, reason: error.message, exitCode: error.exitCode });
          if (!out.isTTY) out.write(`error: ${error.message}\n`);
        }
      }
      report();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
  if (out.isTTY && wanted.length) out.write("\n");
  return summary;
};
