import path from "node:path";
import { answerOf, apiClient, type ApiTarget } from "./api-client.ts";
import { batchHadFailures, type BatchView } from "./batch-view.ts";
import { downloadBatch } from "./download-batch.ts";
import { cliCommand } from "./cli-name.ts";
import { CliError, exitCodes, usageError } from "./exit-codes.ts";
import { resolveInput, type InputKind } from "./input-items.ts";
import { formatDuration, renderProgressBlock, renderProgressLine } from "./progress-view.ts";
import { batchQuery, postBatch, rejectedCountIn, rejectionsIn, scanInput, type BatchOptions, type Rejection } from "./submit-batch.ts";
import { fetchBatch, resultsDir, resumeHint, watchBatch, type Output } from "./watch-batch.ts";

const note = (text: string) => process.stderr.write(`${text}\n`);

const printRejections = (rejections: Rejection[], count: number) => {
  if (!count) return;
  note(`${count} item(s) refused:`);
  for (const r of rejections.slice(0, 20)) note(`  line ${r.line}${r.label ? ` (${r.label})` : ""}: ${r.reason}`);
  if (count > Math.min(rejections.length, 20)) note(`  ... and ${count - Math.min(rejections.length, 20)} more`);
};

const finalWords = (batch: BatchView) => {
  const failed = (batch.counts.failed ?? 0) + (batch.counts.canceled ?? 0);
  note(
    batch.status === "completed"
      ? `All ${batch.counts.succeeded ?? 0} task(s) succeeded.`
      : `The batch ended ${batch.status}: ${batch.counts.succeeded ?? 0} succeeded, ${failed} failed or canceled.${(batch.counts.failed ?? 0) > 0 ? ` Retry the failed ones: ${cliCommand()} retry ${batch.id}` : ""}`,
  );
  note(`Results: ${cliCommand()} download ${batch.id} --out ${resultsDir(batch.id)}`);
  return batchHadFailures(batch) ? exitCodes.batchHadFailures : exitCodes.ok;
};

type SubmitArgs = { input: string; format: InputKind | undefined; options: BatchOptions; watch: boolean; intervalMs: number };

export const submitCommand = async (target: ApiTarget, args: SubmitArgs, out: Output): Promise<number> => {
  const source = await resolveInput(args.input, args.format);
  const query = batchQuery({ ...args.options, name: args.options.name ?? (args.input === "-" ? undefined : path.basename(path.resolve(args.input))) });
  const { idempotencyKey, labels } = await scanInput(source, query);
  if (labels.length === 0) throw usageError(`${source.label} holds no items.`);
  note(`Uploading ${labels.length} item(s) from ${source.label} as one batch to ${target.apiUrl} ...`);
  // Ctrl-C mid-upload: the API keeps the batch with exactly the lines it received, or none.
  const onSigint = () => {
    note(`\nInterrupted during the upload. The API keeps exactly the lines it received (or no batch at all). Run the same command again: a batch that was created is followed (with the lines it received), otherwise it is created.`);
    process.exit(exitCodes.interrupted);
  };
  process.once("SIGINT", onSigint);
  let answer: Awaited<ReturnType<typeof postBatch>>;
  try {
    answer = await postBatch(target, source, query, idempotencyKey);
  } catch (error) {
    if (error instanceof CliError && /\b409\b/.test(error.message)) {
      throw new CliError(exitCodes.api, "The same submit (same input and options) is still being uploaded by another run.", "Wait for it to finish, then run this again to follow its batch.");
    }
    throw error;
  } finally {
    process.removeListener("SIGINT", onSigint);
  }
  if (!("id" in answer.body)) throw new CliError(exitCodes.api, "The API's answer names no batch id.");
  const batchId = answer.body.id;
  if (answer.replayed) note(`Already submitted as batch ${batchId} (same input and options): following that one, nothing new was created.`);
  else note(`Batch ${batchId} created.`);
  const refused = rejectedCountIn(answer.body);
  printRejections(rejectionsIn(answer.body, labels), refused);
  if (!args.watch) {
    out.write(`${batchId}\n`);
    return refused ? exitCodes.batchHadFailures : exitCodes.ok;
  }
  const final = await watchBatch(target, batchId, out, { intervalMs: args.intervalMs });
  const code = finalWords(final);
  return refused ? exitCodes.batchHadFailures : code;
};

export const estimateCommand = async (target: ApiTarget, args: Omit<SubmitArgs, "watch" | "intervalMs">, out: Output): Promise<number> => {
  const source = await resolveInput(args.input, args.format);
  const query = batchQuery(args.options, { dry_run: "true" });
  const { labels } = await scanInput(source, query);
  if (labels.length === 0) throw usageError(`${source.label} holds no items.`);
  const { body } = await postBatch(target, source, query, undefined);
  if (!("dry_run" in body)) throw new CliError(exitCodes.api, "The API's dry-run answer is not what this CLI expects.");
  const e = body;
  out.write(`Dry run for ${source.label} (nothing was created):\n`);
  out.write(`  items           ${labels.length} read, ${e.accepted} valid, ${e.rejected} refused\n`);
  out.write(`  images          ${e.images ?? "?"}\n`);
  out.write(`  credits         ${e.credits}\n`);
  out.write(`  estimated time  ${formatDuration(e.estimated_duration_seconds)}${e.capacity ? ` (${e.capacity.provider_slots} provider slots, ~${Math.round(e.capacity.run_time_ms / 1000)}s per task)` : ""}\n`);
  if (e.spend_cap) {
    const left = e.spend_cap.cap - e.spend_cap.spent - e.spend_cap.committed;
    out.write(`  spend cap       ${e.spend_cap.cap} (spent ${e.spend_cap.spent}, held for unfinished tasks ${e.spend_cap.committed}, ${left} left)${e.spend_cap.would_exceed ? ` - this batch (${e.credits}) WOULD EXCEED it` : ""}\n`);
  }
  printRejections(rejectionsIn(body, labels), e.rejected);
  return e.rejected || e.spend_cap?.would_exceed ? exitCodes.batchHadFailures : exitCodes.ok;
};

export const statusCommand = async (target: ApiTarget, batchId: string, json: boolean, out: Output): Promise<number> => {
  const batch = await fetchBatch(target, batchId);
  if (json) out.write(`${JSON.stringify(batch, null, 2)}\n`);
  else if (out.isTTY) out.write(`${renderProgressBlock(batch, { color: out.color, width: out.columns }).join("\n")}\n`);
  else out.write(`${renderProgressLine(batch)}\n`);
  return ["completed_with_errors", "canceled"].includes(batch.status) ? exitCodes.batchHadFailures : exitCodes.ok;
};

export const watchCommand = async (target: ApiTarget, batchId: string, intervalMs: number, out: Output) =>
  finalWords(await watchBatch(target, batchId, out, { intervalMs }));

export const downloadCommand = async (target: ApiTarget, batchId: string, outDir: string, concurrency: number, out: Output): Promise<number> => {
  const batch = await fetchBatch(target, batchId);
  if (!["completed", "completed_with_errors", "canceled"].includes(batch.status)) {
    note(`Batch ${batchId} is still ${batch.status}: downloading what is finished so far (run this again later for the rest).`);
  }
  const summary = await downloadBatch(target, batchId, outDir, out, concurrency);
  out.write(`Saved to ${path.resolve(outDir)}: manifest.ndjson and ${summary.fetched + summary.skipped}/${summary.images} image(s) (${summary.fetched} downloaded, ${summary.skipped} already there and intact).\n`);
  if (summary.failed.length) {
    for (const f of summary.failed) note(`  ${f.file}: ${f.reason}`);
    throw new CliError(
      summary.failed.some((f) => f.exitCode === exitCodes.verification) ? exitCodes.verification : exitCodes.api,
      `${summary.failed.length} image(s) could not be downloaded and verified; run the same command again to retry them.`,
    );
  }
  return exitCodes.ok;
};

export const controlCommand = async (target: ApiTarget, action: "cancel" | "retry", batchId: string, watch: boolean, intervalMs: number, out: Output) => {
  const api = apiClient(target);
  const params = { path: { batchId } };
  if (action === "cancel") {
    const canceled = await answerOf(api.POST("/v1/batches/{batchId}/cancel", { params }));
    note(`Batch ${batchId}: cancel requested. Queued tasks will not be submitted; tasks already at the provider finish.`);
    out.write(`${renderProgressLine(canceled)}\n`);
    return exitCodes.ok;
  }
  const { retried } = await answerOf(api.POST("/v1/batches/{batchId}/retry", { params }));
  note(`Batch ${batchId}: ${retried} failed task(s) queued again.`);
  if (!watch) {
    note(resumeHint(batchId));
    return exitCodes.ok;
  }
  return finalWords(await watchBatch(target, batchId, out, { intervalMs }));
};
