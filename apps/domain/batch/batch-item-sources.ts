import type { Readable } from "node:stream";

// One item of an upload as read, before validation: its 1-based line (the item's 1-based index in
// a JSON body) and either the raw object or why it could not be read.
export type RawItem = { line: number; value: Record<string, unknown> } | { line: number; error: string };

// The longest line we read: a 10 MB image in Base64 (13.4 MB) plus the item's other fields.
export const MAX_LINE_BYTES = 16 * 1024 * 1024;

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

// Splits a byte stream into lines without holding more than one line: the request's own async
// iterator reads a chunk only when the previous one is consumed, so a slow database slows the
// upload (backpressure) instead of filling memory. An over-long line is skipped to its end and
// reported, so one bad line cannot stop the others.
async function* linesOf(stream: AsyncIterable<Buffer>): AsyncGenerator<{ line: number; text: string } | { line: number; tooLong: true }> {
  let parts: Buffer[] = [];
  let held = 0;
  let skipping = false;
  let line = 0;
  for await (const chunk of stream) {
    let start = 0;
    for (let nl = chunk.indexOf(10, start); nl !== -1; nl = chunk.indexOf(10, start)) {
      line++;
      if (skipping || held + (nl - start) > MAX_LINE_BYTES) {
        yield { line, tooLong: true };
      } else {
        parts.push(chunk.subarray(start, nl));
        yield { line, text: Buffer.concat(parts).toString("utf8").replace(/\r$/, "") };
      }
      parts = [];
      held = 0;
      skipping = false;
      start = nl + 1;
    }
    if (start < chunk.length && !skipping) {
      held += chunk.length - start;
      if (held > MAX_LINE_BYTES) {
        skipping = true;
        parts = [];
      } else parts.push(chunk.subarray(start));
    }
  }
  if (skipping) yield { line: line + 1, tooLong: true };
  else if (held > 0) yield { line: line + 1, text: Buffer.concat(parts).toString("utf8").replace(/\r$/, "") };
}

const tooLong = `line is longer than ${MAX_LINE_BYTES} bytes`;

export async function* ndjsonItems(stream: Readable | AsyncIterable<Buffer>): AsyncGenerator<RawItem> {
  for await (const read of linesOf(stream)) {
    if ("tooLong" in read) {
      yield { line: read.line, error: tooLong };
      continue;
    }
    // Blank lines (a trailing newline, spacing) are not items.
    if (read.text.trim() === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(read.text);
    } catch {
      yield { line: read.line, error: "is not valid JSON" };
      continue;
    }
    yield isPlainObject(value) ? { line: read.line, value } : { line: read.line, error: "must be a JSON object" };
  }
}

// RFC 4180 fields of one line. A quoted field may not span lines here (an image is a URL or
// Base64, neither has a newline): such a line is reported rather than guessed at.
const csvFields = (text: string): string[] | undefined => {
  const fields: string[] = [];
  let i = 0;
  while (true) {
    if (text[i] === '"') {
      let value = "";
      i++;
      while (true) {
        const q = text.indexOf('"', i);
        if (q === -1) return undefined;
        value += text.slice(i, q);
        if (text[q + 1] === '"') {
          value += '"';
          i = q + 2;
          continue;
        }
        i = q + 1;
        break;
      }
      fields.push(value);
      if (i === text.length) return fields;
      if (text[i] !== ",") return undefined;
      i++;
    } else {
      const comma = text.indexOf(",", i);
      if (comma === -1) {
        fields.push(text.slice(i));
        return fields;
      }
      fields.push(text.slice(i, comma));
      i = comma + 1;
    }
  }
};

// Cells are text; the provider's numeric fields are numbers. An empty cell is an absent field (so
// the batch default applies).
const numericFields = new Set(["up_expansion_ratio", "down_expansion_ratio", "bottom_expansion_ratio", "left_expansion_ratio", "right_expansion_ratio"]);

const cellValue = (field: string, cell: string): unknown => {
  if (numericFields.has(field)) return /^\s*-?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?\s*$/i.test(cell) ? Number(cell) : cell;
  if (field === "watermark") return cell.trim().toLowerCase() === "true" ? true : cell.trim().toLowerCase() === "false" ? false : cell;
  return cell;
};

export async function* csvItems(stream: Readable | AsyncIterable<Buffer>): AsyncGenerator<RawItem> {
  let header: string[] | undefined;
  for await (const read of linesOf(stream)) {
    if ("tooLong" in read) {
      yield { line: read.line, error: tooLong };
      continue;
    }
    if (read.text.trim() === "") continue;
    const fields = csvFields(read.text.replace(/^\uFEFF/, ""));
    if (!header) {
      if (!fields || fields.length === 0) {
        yield { line: read.line, error: "the header row is not valid CSV" };
        return;
      }
      header = fields.map((f) => f.trim());
      continue;
    }
    if (!fields) {
      yield { line: read.line, error: "is not valid CSV (an unclosed or misplaced quote)" };
      continue;
    }
    if (fields.length !== header.length) {
      yield { line: read.line, error: `has ${fields.length} fields; the header names ${header.length}` };
      continue;
    }
    const value: Record<string, unknown> = {};
    header.forEach((field, i) => {
      const cell = fields[i]!;
      if (cell === "") return;
      // `watermark` is the CSV spelling of the provider's watermark_info.enabled.
      if (field === "watermark") value.watermark_info = { enabled: cellValue(field, cell) };
      else value[field] = cellValue(field, cell);
    });
    yield { line: read.line, value };
  }
}
