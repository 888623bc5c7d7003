import { once } from "node:events";
import type { Response } from "express";
import { batchTasksInPages } from "../../domain/batch/batch.repository.ts";
import type { TaskWithImages } from "../../domain/task/task.repository.ts";
import { finalUnitDeductionOf } from "../../domain/task/task.presenter.ts";
import type { ApiDeps } from "../api-deps.ts";

// One line per task, in upload order: what went in (line; the image URL, else the item's
// input_name, else "inline"), how it ended,
// where its images are kept (with size and SHA-256), what it cost, and why it failed.
const manifestLine = (deps: Pick<ApiDeps, "signLink">, t: TaskWithImages) => ({
  line: t.batchLine,
  task_id: t.id,
  external_task_id: t.externalTaskId,
  input: t.imageUrl ?? t.inputName ?? "inline",
  input_name: t.inputName,
  status: t.status,
  images: t.status === "succeeded"
    ? t.images.map((i) => ({ index: i.index, location: i.storageKey, url: deps.signLink(t.id, i.index), width: i.width, height: i.height, sha256: i.sha256 }))
    : [],
  credits: finalUnitDeductionOf(t) === undefined ? null : Number(finalUnitDeductionOf(t)),
  error: t.status === "failed" || t.status === "canceled" ? { class: t.failureClass, code: t.failureCode, message: t.failureMessage } : null,
});

const csvHeader = "line,task_id,external_task_id,input,status,credits,error_class,error_message,image_locations,image_widths,image_heights,image_sha256s";
// OWASP's CSV injection rule: a spreadsheet runs a cell that starts with = + - @ (or TAB / CR,
// which some strip first) as a formula, so such a cell gets a leading ' and is read as text. Callers
// write some of these fields (external_task_id, error messages quoting their input); none of ours is
// a negative number, so nothing of ours changes meaning.
const formulaLead = /^[=+\-@\t\r]/;
export const csvCell = (v: unknown) => {
  const raw = v === null || v === undefined ? "" : String(v);
  const s = formulaLead.test(raw) ? `'${raw}` : raw;
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
};
const toCsv = (m: ReturnType<typeof manifestLine>) =>
  [
    m.line,
    m.task_id,
    m.external_task_id,
    m.input,
    m.status,
    m.credits,
    m.error?.class,
    m.error?.message,
    m.images.map((i) => i.location).join(";"),
    m.images.map((i) => i.width).join(";"),
    m.images.map((i) => i.height).join(";"),
    m.images.map((i) => i.sha256).join(";"),
  ]
    .map(csvCell)
    .join(",");

// Streamed page by page with backpressure: memory holds one page whatever the batch's size.
export const streamManifest = async (deps: Pick<ApiDeps, "db" | "signLink">, res: Response, batchId: string, format: "ndjson" | "csv") => {
  res.status(200).type(format === "csv" ? "text/csv" : "application/x-ndjson");
  if (format === "csv") res.write(`${csvHeader}\n`);
  for await (const page of batchTasksInPages(deps.db, batchId)) {
    if (res.destroyed) return;
    const text = page.map((t) => (format === "csv" ? toCsv(manifestLine(deps, t)) : JSON.stringify(manifestLine(deps, t)))).join("\n") + "\n";
    if (!res.write(text)) await Promise.race([once(res, "drain"), once(res, "close")]);
  }
  res.end();
};
