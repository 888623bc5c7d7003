// How the API benchmark prints: one table row per measured path, its raw baseline beside it.
import type { Figures } from "./api-load.ts";

export type Row = {
  path: string;
  concurrency: string;
  figures: Figures;
  // Cores busy on average over the phase (warm-up included): the API process, this process.
  apiCores?: number;
  benchCores?: number;
  baseline?: { name: string; figures: Figures };
  note?: string;
};

export const ratioOf = (row: Row | undefined) =>
  row?.baseline && row.baseline.figures.perSecond > 0 ? row.figures.perSecond / row.baseline.figures.perSecond : undefined;

const num = (x: number | undefined, digits = 1) => (x === undefined || !Number.isFinite(x) ? "-" : x.toFixed(digits));
const statusList = (statuses: Record<string, number>) =>
  Object.entries(statuses)
    .map(([code, count]) => `${code}x${count}`)
    .join(" ");

export const formatTable = (rows: Row[]): string => {
  const header = ["path", "conc", "ok/s", "p50 ms", "p99 ms", "non-2xx", "cpu api/bench", "ok/api-core", "raw baseline", "ops/s", "p50 ms", "p99 ms", "ratio"];
  const cells = rows.map((row) => {
    const f = row.figures;
    const b = row.baseline?.figures;
    return [
      row.path,
      row.concurrency,
      num(f.perSecond),
      num(f.p50Ms),
      num(f.p99Ms),
      f.non2xx ? `${f.non2xx} <<< ${statusList(f.statuses)}` : "0",
      row.apiCores === undefined ? "-" : `${num(row.apiCores, 2)}/${num(row.benchCores, 2)}`,
      // What one API core serves: steadier than ok/s when neighbours take CPU away.
      row.apiCores ? num(f.perSecond / row.apiCores, 0) : "-",
      row.baseline?.name ?? "-",
      num(b?.perSecond),
      num(b?.p50Ms),
      num(b?.p99Ms),
      num(ratioOf(row), 3),
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) =>
    c
      .map((v, i) => (i === 0 || i === 8 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!)))
      .join("  ")
      .trimEnd();
  const out = [line(header), widths.map((w) => "-".repeat(w)).join("  ")];
  for (const [i, row] of rows.entries()) {
    out.push(line(cells[i]!));
    if (row.note) out.push(`    ${row.note}`);
  }
  return out.join("\n");
};
