import { setTimeout as sleep } from "node:timers/promises";
import { answerOf, apiClient, type ApiTarget } from "./api-client.ts";
import { isFinished, type BatchView } from "./batch-view.ts";
import { cliCommand } from "./cli-name.ts";
import { CliError, exitCodes } from "./exit-codes.ts";
import { renderProgressBlock, renderProgressLine } from "./progress-view.ts";

export type Output = { write: (text: string) => void; isTTY: boolean; columns: number; color: boolean };

export const terminalOutput = (): Output => {
  const isTTY = process.stdout.isTTY === true;
  return {
    write: (text) => process.stdout.write(text),
    isTTY,
    columns: process.stdout.columns ?? 80,
    color: isTTY && !process.env.NO_COLOR && process.env.TERM !== "dumb",
  };
};

export const fetchBatch = async (target: ApiTarget, batchId: string) =>
  answerOf(apiClient(target).GET("/v1/batches/{batchId}", { params: { path: { batchId } } }));

// A folder name that works as printed (a placeholder such as <dir> would not).
export const resultsDir = (batchId: string) => `results-${batchId.slice(0, 8)}`;

export const resumeHint = (batchId: string) =>
  `The batch keeps running on the server. Follow it again with:\n  ${cliCommand()} watch ${batchId}\nand fetch its results with:\n  ${cliCommand()} download ${batchId} --out ${resultsDir(batchId)}`;

// Ctrl-C while watching stops only the watching: the work is the server's.
const interrupted = (batchId: string) => new CliError(exitCodes.interrupted, "Interrupted.", resumeHint(batchId));

// Follows a batch to its end: bars redrawn in place on a terminal, a plain line whenever something
// changed (and at least every 30 s) elsewhere.
const maxFailures = 30;

export const watchBatch = async (target: ApiTarget, batchId: string, out: Output, options: { intervalMs: number }): Promise<BatchView> => {
  const abort = new AbortController();
  const onSigint = () => abort.abort();
  process.once("SIGINT", onSigint);
  let drawn = 0;
  let lastLine = "";
  let lastLineAt = 0;
  const draw = (batch: BatchView) => {
    if (out.isTTY) {
      const lines = renderProgressBlock(batch, { color: out.color, width: out.columns });
      // Move up over the previous block and overwrite it line by line (clearing each line's rest).
      out.write(`${drawn ? `\u001b[${drawn}F` : ""}${lines.map((l) => `${l}\u001b[K`).join("\n")}\n`);
      drawn = lines.length;
      return;
    }
    const line = renderProgressLine(batch);
    const key = line.replace(/ eta=\S+/, "");
    if (key !== lastLine || Date.now() - lastLineAt > 30_000 || isFinished(batch)) {
      out.write(`${line}\n`);
      lastLine = key;
      lastLineAt = Date.now();
    }
  };
  // A restarting API or a blip of the network should not end a long watch: keep trying for a while.
  let failures = 0;
  const readBatch = async (): Promise<BatchView | undefined> => {
    try {
      const batch = await fetchBatch(target, batchId);
      failures = 0;
      return batch;
    } catch (error) {
      const transient = error instanceof CliError && (error.exitCode === exitCodes.unreachable || /answered 5\d\d/.test(error.message));
      if (!transient || ++failures > maxFailures) throw error;
      if (failures === 1) process.stderr.write(`(the API did not answer: ${error.message} Still trying...)\n`);
      return undefined;
    }
  };
  try {
    while (true) {
      if (abort.signal.aborted) throw interrupted(batchId);
      const batch = await readBatch();
      if (batch) draw(batch);
      if (batch && isFinished(batch)) return batch;
      try {
        await sleep(options.intervalMs, undefined, { signal: abort.signal });
      } catch {
        throw interrupted(batchId);
      }
    }
  } finally {
    process.removeListener("SIGINT", onSigint);
  }
};
