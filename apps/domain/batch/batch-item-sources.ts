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
export async function* linesOf(stream: AsyncIterable<Buffer>): AsyncGenerator<{ line: number; text: string } | { line: number; tooLong: true }> {
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

export const tooLong = `line is longer than ${MAX_LINE_BYTES} bytes`;

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
