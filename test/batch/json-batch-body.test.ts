import { createHash } from "node:crypto";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { canonical } from "../../apps/domain/idempotency/request-hash.ts";
import type { AppError } from "../../apps/domain/errors/app-error.ts";
import { chunksSource, scanJsonBatchBody, type BatchBodySource } from "../../apps/domain/batch/json-batch-body.ts";
import { openBodySpool, sweepBodySpool } from "../../apps/api/middleware/body-spool.ts";

// The body cut into chunks at the given offsets, as a socket may deliver it.
const chunked = (text: string, cuts: number[]): BatchBodySource => {
  const bytes = Buffer.from(text, "utf8");
  const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const cut of [...at, bytes.length]) {
    chunks.push(bytes.subarray(from, cut));
    from = cut;
  }
  return chunksSource({ chunks, length: bytes.length });
};

// The body as the API keeps it: spooled to a file, written in the socket's chunks.
const spooled = (text: string, cuts: number[], dir: string) => {
  const spool = openBodySpool(dir);
  const source = chunked(text, cuts);
  for (let at = 0, k = 0; at < source.length; k++) {
    const size = Math.max(1, Math.min(source.length - at, (cuts[k] ?? source.length) % 97 + 1));
    spool.write(Buffer.from(source.read(at, size)));
    at += size;
  }
  return spool;
};

const wholeHash = (value: unknown) => createHash("sha256").update(JSON.stringify(canonical(value))).digest("hex");
const scannedHash = (scanned: Exclude<ReturnType<typeof scanJsonBatchBody>, "not_an_object">) => {
  const hash = createHash("sha256");
  scanned.hashCanonical(hash, canonical);
  return hash.digest("hex");
};

const readAll = async (scanned: Exclude<ReturnType<typeof scanJsonBatchBody>, "not_an_object">) => {
  const out = [];
  for await (const item of scanned.items()) out.push(item);
  return out;
};

describe("a JSON batch body read item by item", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), "json-batch-body-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("when any JSON object is cut into chunks anywhere, then its fields, items and idempotency hash are those of JSON.parse of the whole", async () => {
    const item = fc.oneof(fc.jsonValue(), fc.dictionary(fc.string(), fc.jsonValue()));
    const body = fc.record(
      { name: fc.string(), defaults: fc.dictionary(fc.string(), fc.jsonValue()), items: fc.array(item, { maxLength: 8 }), other: fc.jsonValue() },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(body, fc.array(fc.nat(), { maxLength: 6 }), fc.boolean(), fc.boolean(), fc.integer({ min: 1, max: 64 }), async (value, cuts, spaced, onDisk, window) => {
        const text = JSON.stringify(value, null, spaced ? 2 : undefined);
        const parsed = JSON.parse(text) as Record<string, unknown>;
        // In memory or spooled to disk, read through windows of any size (the API's is 64 KB).
        const source = onDisk ? spooled(text, cuts, dir) : chunked(text, cuts);
        const scanned = scanJsonBatchBody(source, 100, window);
        if (scanned === "not_an_object") throw new Error("an object was not recognised");
        const { items, ...rest } = parsed;
        expect(Object.fromEntries(scanned.fields)).toEqual(rest);
        expect(scanned.itemCount).toBe(Array.isArray(items) ? items.length : undefined);
        if (Array.isArray(items)) {
          expect(await readAll(scanned)).toEqual(
            items.map((v, i) => (typeof v === "object" && v !== null && !Array.isArray(v) ? { line: i + 1, value: v } : { line: i + 1, error: "must be a JSON object" })),
          );
        }
        expect(scannedHash(scanned)).toBe(wholeHash(parsed));
        if ("close" in source) (source as { close: () => void }).close();
      }),
      { numRuns: 300 },
    );
  });

  it("when the body does not parse, then it is refused as not valid JSON once its items are read, wherever the fault is", () => {
    const bad = [
      '{"items":[{"a":1},]}',
      '{"items":[{"a":1}',
      '{"items":[{"a":1}]',
      '{"items":[{"a":1}]} x',
      '{"name":}',
      '{"name" "x"}',
      '{"name":"x",}',
      '{"items":[{"a":"unterminated}]}',
      '{"items":[tru]}',
      '{"items":[{"a":1}{"b":2}]}',
      "{name:1}",
      '{"items":[{"a":[1,2}]}',
    ];
    for (const text of bad) {
      expect(() => JSON.parse(text), text).toThrow();
      for (const cut of [0, 3, 7, 11]) {
        const refusal = (() => {
          try {
            const scanned = scanJsonBatchBody(chunked(text, [cut]), 100);
            // As the route does before writing anything: every item is read once.
            if (scanned !== "not_an_object") for (let i = 0; i < (scanned.itemCount ?? 0); i++) scanned.item(i);
          } catch (error) {
            return error as AppError;
          }
        })();
        expect(refusal?.violations, `${text} cut at ${cut}`).toEqual([{ field: "body", message: "is not valid JSON" }]);
      }
    }
  });

  it("when the body is another JSON value, then it is not taken for an object; a repeated key counts once, the last", async () => {
    for (const text of ["[1,2]", "123", '"x"', "null", " true"]) expect(scanJsonBatchBody(chunked(text, []), 10)).toBe("not_an_object");
    const scanned = scanJsonBatchBody(chunked('\uFEFF{"items":[{"a":1}],"name":"a","items":[{"b":2},3],"name":"b"}', [5]), 10);
    if (scanned === "not_an_object") throw new Error("an object was not recognised");
    expect(scanned.fields.get("name")).toBe("b");
    expect(await readAll(scanned)).toEqual([{ line: 1, value: { b: 2 } }, { line: 2, error: "must be a JSON object" }]);
  });

  it("when there are more items than it keeps, then all are counted and only the kept ones are read", async () => {
    const text = JSON.stringify({ items: Array.from({ length: 25 }, (_, i) => ({ i })) });
    const scanned = scanJsonBatchBody(chunked(text, [17, 40, 99]), 10);
    if (scanned === "not_an_object") throw new Error("an object was not recognised");
    expect(scanned.itemCount).toBe(25);
    expect((await readAll(scanned)).map((r) => r.line)).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
  });
});

describe("the JSON batch body spool", () => {
  it("when a body is spooled, then no file of it is left in the directory; the sweep at start removes only what a gone process (or this pid's earlier life) left", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "body-spool-"));
    try {
      const spool = openBodySpool(dir);
      spool.write(Buffer.from('{"items":[]}'));
      expect(readdirSync(dir)).toEqual([]);
      expect(spool.read(0, spool.length).toString()).toBe('{"items":[]}');
      spool.close();
      // A pid that has just exited, this process's own, and a live other one (the parent).
      const gone = spawnSync(process.execPath, ["-e", ""]).pid!;
      for (const pid of [gone, process.pid, process.ppid]) writeFileSync(path.join(dir, `${pid}-left.json`), "{}");
      expect(sweepBodySpool(dir)).toBe(2);
      expect(readdirSync(dir)).toEqual([`${process.ppid}-left.json`]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
