import type { Hash } from "node:crypto";
import { validationError } from "../errors/app-error.ts";
import { boundOldGenerationGrowth } from "../process/heap-growth.ts";
import type { RawItem } from "./batch-item-sources.ts";

// A JSON batch body, read where it is kept: on disk while the request is answered (the API spools
// it, body-spool.ts), or as in-memory chunks (an encoded body, tests). Parsing it whole took the API
// to ~3x the body (a 28 MB batch: the decoded string, its flattened copy, the parsed tree, a
// canonical copy for the idempotency hash, and the items validated twice); here the body is read in
// windows of a few dozen KB, and each item is parsed from its own bytes when it is needed and
// dropped after (acceptBatch holds one chunk of items).
export type BatchBodySource = {
  readonly length: number;
  // `size` bytes from `position` (inside the body): a view or a copy, the caller's to keep.
  read: (position: number, size: number) => Buffer;
};

export type BodyChunks = { chunks: Buffer[]; length: number };

// The chunks as a source: a value inside one chunk is a view of it, one across chunks is joined.
export const chunksSource = (body: BodyChunks): BatchBodySource => {
  const starts: number[] = [];
  let at = 0;
  for (const c of body.chunks) {
    starts.push(at);
    at += c.length;
  }
  return {
    length: body.length,
    read: (start, size) => {
      const end = start + size;
      let lo = 0;
      let hi = starts.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (starts[mid]! <= start) lo = mid;
        else hi = mid - 1;
      }
      const parts: Buffer[] = [];
      for (let i = lo; i < body.chunks.length && starts[i]! < end; i++) {
        const from = Math.max(0, start - starts[i]!);
        const to = Math.min(body.chunks[i]!.length, end - starts[i]!);
        parts.push(body.chunks[i]!.subarray(from, to));
      }
      return parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
    },
  };
};

type Range = { start: number; end: number };

// What one structural pass over `{ "name": ..., "defaults": ..., "items": [ ... ] }` found: the
// byte ranges of the top-level fields and of each item (up to `keepItems` of them; the rest are
// counted, since a body with more is refused anyway). The structure and the fields were checked to
// be valid JSON; an item is checked by item(), which throws `body: is not valid JSON` as well: the
// caller reads every item once (the idempotency hash, the planned credits) before writing any.
export type ScannedBatchBody = {
  fields: Map<string, unknown>;
  itemCount: number | undefined; // undefined: `items` is absent or not an array (then in `fields`)
  item: (index: number) => unknown;
  items: () => AsyncGenerator<RawItem>;
  // JSON.stringify(canonical(body)) without building it: the bytes that idempotency.ts hashes.
  hashCanonical: (hash: Hash, canonical: (value: unknown) => unknown) => void;
};

const notJson = () => validationError([{ field: "body", message: "is not valid JSON" }]);

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

const QUOTE = 34;
const BACKSLASH = 92;
const isWs = (b: number) => b === 32 || b === 9 || b === 10 || b === 13;

// The bytes the structural pass reads at once: the whole body is never in memory, one window is.
const WINDOW_BYTES = 64 * 1024;

// A cursor over the body that reads it window by window; values are read by their offsets.
class Bytes {
  private window: Buffer = Buffer.alloc(0);
  private windowStart = 0;
  private off = 0;
  pos = 0;
  constructor(
    private readonly source: BatchBodySource,
    private readonly windowBytes: number,
  ) {}
  // Moves the window to `pos` when the cursor has run past it; false at the body's end.
  private fill(): boolean {
    if (this.off < this.window.length) return true;
    if (this.pos >= this.source.length) return false;
    this.windowStart = this.pos;
    this.window = this.source.read(this.pos, Math.min(this.windowBytes, this.source.length - this.pos));
    this.off = 0;
    return this.window.length > 0;
  }
  peek(): number {
    return this.fill() ? this.window[this.off]! : -1;
  }
  take(): number {
    const b = this.peek();
    if (b !== -1) {
      this.off++;
      this.pos++;
    }
    return b;
  }
  skipWs() {
    while (isWs(this.peek())) this.take();
  }
  // After the opening quote; false when the body ends inside the string.
  skipString(): boolean {
    let escaped = false;
    for (;;) {
      if (!this.fill()) return false;
      const chunk = this.window;
      for (let i = this.off; i < chunk.length; i++) {
        const b = chunk[i]!;
        if (escaped) escaped = false;
        else if (b === BACKSLASH) escaped = true;
        else if (b === QUOTE) {
          this.pos += i + 1 - this.off;
          this.off = i + 1;
          return true;
        }
      }
      this.pos += chunk.length - this.off;
      this.off = chunk.length;
    }
  }
  // One value's extent; its content is checked by JSON.parse on its own bytes.
  skipValue() {
    const first = this.peek();
    if (first === QUOTE) {
      this.take();
      if (!this.skipString()) throw notJson();
      return;
    }
    if (first === 123 || first === 91) {
      let depth = 0;
      for (;;) {
        const b = this.take();
        if (b === -1) throw notJson();
        if (b === QUOTE) {
          if (!this.skipString()) throw notJson();
        } else if (b === 123 || b === 91) depth++;
        else if (b === 125 || b === 93) {
          if (--depth === 0) return;
        }
      }
    }
    for (let b = this.peek(); b !== -1 && !isWs(b) && b !== 44 && b !== 125 && b !== 93; b = this.peek()) this.take();
  }
  text({ start, end }: Range): string {
    // Inside the current window (a field name, a short value): no read.
    if (start >= this.windowStart && end <= this.windowStart + this.window.length) {
      return this.window.toString("utf8", start - this.windowStart, end - this.windowStart);
    }
    return this.source.read(start, end - start).toString("utf8");
  }
  parse(range: Range): unknown {
    try {
      return JSON.parse(this.text(range));
    } catch {
      throw notJson();
    }
  }
}

const BOM = [0xef, 0xbb, 0xbf];

// How many item bytes are parsed between two looks at the old generation's growth.
const COLLECT_EVERY_BYTES = 512 * 1024;

// `undefined` when the body is not a JSON object (the caller answers that in its own words).
// Throws `body: is not valid JSON` for a body that does not parse, as a whole parse would.
export const scanJsonBatchBody = (body: BatchBodySource, keepItems: number, windowBytes = WINDOW_BYTES): ScannedBatchBody | "not_an_object" => {
  const bytes = new Bytes(body, windowBytes);
  const head = body.read(0, Math.min(3, body.length));
  if (BOM.every((b, i) => head[i] === b)) for (let i = 0; i < 3; i++) bytes.take();
  bytes.skipWs();
  if (bytes.peek() !== 123) return "not_an_object";
  bytes.take();
  const fieldRanges = new Map<string, Range>();
  let itemRanges: Range[] | undefined;
  let itemCount: number | undefined;
  bytes.skipWs();
  if (bytes.peek() === 125) bytes.take();
  else
    for (;;) {
      bytes.skipWs();
      const keyStart = bytes.pos;
      if (bytes.take() !== QUOTE || !bytes.skipString()) throw notJson();
      const key = bytes.parse({ start: keyStart, end: bytes.pos });
      if (typeof key !== "string") throw notJson();
      bytes.skipWs();
      if (bytes.take() !== 58) throw notJson();
      bytes.skipWs();
      // A repeated key: the last one counts, as in JSON.parse.
      fieldRanges.delete(key);
      if (key === "items") {
        itemRanges = undefined;
        itemCount = undefined;
      }
      if (key === "items" && bytes.peek() === 91) {
        bytes.take();
        itemRanges = [];
        itemCount = 0;
        bytes.skipWs();
        if (bytes.peek() === 93) bytes.take();
        else
          for (;;) {
            bytes.skipWs();
            const start = bytes.pos;
            bytes.skipValue();
            // An item's content is checked when it is first parsed (item(), before anything is
            // written): parsing each one here too was another body's worth of garbage.
            if (itemCount < keepItems) itemRanges.push({ start, end: bytes.pos });
            itemCount++;
            bytes.skipWs();
            const b = bytes.take();
            if (b === 93) break;
            if (b !== 44) throw notJson();
          }
      } else {
        const start = bytes.pos;
        bytes.skipValue();
        const range = { start, end: bytes.pos };
        bytes.parse(range);
        fieldRanges.set(key, range);
      }
      bytes.skipWs();
      const b = bytes.take();
      if (b === 125) break;
      if (b !== 44) throw notJson();
    }
  bytes.skipWs();
  if (bytes.peek() !== -1) throw notJson();

  // The batch's own fields are small; they are parsed once and kept.
  const fields = new Map([...fieldRanges].map(([k, r]) => [k, bytes.parse(r)]));
  const ranges = itemRanges;
  // Every pass over the items (the hash, the price, the intake) makes garbage in proportion to the
  // body: it is collected every few MB of items (heap-growth.ts says why V8 would not).
  let parsedBytes = 0;
  const item = (index: number) => {
    const range = ranges![index]!;
    parsedBytes += range.end - range.start;
    if (parsedBytes >= COLLECT_EVERY_BYTES) {
      parsedBytes = 0;
      boundOldGenerationGrowth();
    }
    return bytes.parse(range);
  };
  return {
    fields,
    itemCount,
    item,
    items: async function* () {
      for (let i = 0; i < (ranges?.length ?? 0); i++) {
        const value = item(i);
        yield isPlainObject(value) ? { line: i + 1, value } : { line: i + 1, error: "must be a JSON object" };
      }
    },
    hashCanonical: (hash, canonical) => {
      const keys = [...fields.keys(), ...(ranges ? ["items"] : [])].sort();
      hash.update("{");
      keys.forEach((key, k) => {
        hash.update(`${k > 0 ? "," : ""}${JSON.stringify(key)}:`);
        if (key !== "items" || !ranges) return void hash.update(JSON.stringify(canonical(fields.get(key))));
        hash.update("[");
        for (let i = 0; i < ranges.length; i++) hash.update(`${i > 0 ? "," : ""}${JSON.stringify(canonical(item(i)))}`);
        hash.update("]");
      });
      hash.update("}");
    },
  };
};
