import { groupCount, isFinished, runSeconds, statusGroups, totalOf, type BatchView } from "./batch-view.ts";

export const formatDuration = (seconds: number | null | undefined) => {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "estimating";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
};

const bar = (fraction: number, width: number) => {
  const cells = Math.max(0, Math.min(width, Math.round(fraction * width)));
  return "█".repeat(cells) + "░".repeat(width - cells);
};

const paint = (color: boolean, code: number, text: string) => (color ? `\u001b[${code}m${text}\u001b[0m` : text);

const percentOf = (batch: BatchView, total: number) => {
  if (typeof batch.percent === "number") return batch.percent;
  const finished = groupCount(batch, ["succeeded", "failed", "canceled"]);
  return total === 0 ? 100 : Math.round((finished / total) * 1000) / 10;
};

const lifeRate = (batch: BatchView) => {
  const seconds = runSeconds(batch);
  const ended = groupCount(batch, ["succeeded", "failed", "canceled"]);
  if (!seconds || ended === 0) return "";
  const perSecond = ended / seconds;
  return `  ${perSecond >= 10 ? perSecond.toFixed(0) : perSecond >= 1 ? perSecond.toFixed(1) : perSecond.toFixed(2)} tasks/s`;
};

// The block a terminal shows and redraws: one overall bar, then one bar per status group.
export const renderProgressBlock = (batch: BatchView, options: { color: boolean; width: number }) => {
  const total = totalOf(batch);
  const percent = percentOf(batch, total);
  const barWidth = Math.max(10, Math.min(40, options.width - 46));
  const eta = isFinished(batch) ? `done in ${formatDuration(runSeconds(batch))}` : `ETA ${formatDuration(batch.eta_seconds)}`;
  // While it runs: the API's recent rate. Once it is over: the tasks that ended over the batch's
  // whole life (created to finished), not the last minute's rate.
  const rate = isFinished(batch) ? lifeRate(batch) : batch.throughput_per_second ? `  ${batch.throughput_per_second}/s` : "";
  const head = `${paint(options.color, 1, `batch ${batch.id}`)}${batch.name ? ` (${batch.name})` : ""}  ${batch.status}`;
  const lines = [
    head,
    `  ${bar(percent / 100, barWidth)} ${percent.toFixed(1).padStart(5)}%  ${eta}${rate}`,
  ];
  for (const group of statusGroups) {
    const count = groupCount(batch, group.statuses);
    lines.push(`  ${group.label.padEnd(10)} ${paint(options.color, group.color, bar(total ? count / total : 0, barWidth))} ${String(count).padStart(String(total).length)}/${total}`);
  }
  if (batch.credits_spent !== null && batch.credits_spent !== undefined) {
    const held = batch.credits_reserved ? ` (${batch.credits_reserved} more held for unfinished tasks)` : "";
    lines.push(`  credits spent so far: ${batch.credits_spent}${held}`);
  }
  return lines;
};

// One line for logs and pipes (stdout not a terminal).
export const renderProgressLine = (batch: BatchView) => {
  const total = totalOf(batch);
  const parts = statusGroups.map((g) => `${g.label.replace(" ", "_")}=${groupCount(batch, g.statuses)}`);
  const eta = isFinished(batch) ? "" : ` eta=${formatDuration(batch.eta_seconds).replace(" ", "")}`;
  const credits = batch.credits_spent === undefined ? "" : ` credits_spent=${batch.credits_spent} credits_reserved=${batch.credits_reserved ?? 0}`;
  return `batch ${batch.id} ${batch.status} ${percentOf(batch, total).toFixed(1)}% total=${total} ${parts.join(" ")}${eta}${credits}`;
};
