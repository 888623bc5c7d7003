import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { csvItems } from "../../apps/domain/batch/csv-batch-body.ts";

// The body cut into chunks at the given byte offsets, as a socket may deliver it.
async function* chunked(text: string, cuts: number[] = []): AsyncGenerator<Buffer> {
  const bytes = Buffer.from(text, "utf8");
  let from = 0;
  for (const cut of [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)) {
    yield bytes.subarray(from, cut);
    from = cut;
  }
  yield bytes.subarray(from);
}

const readAll = async (text: string, cuts?: number[]) => {
  const out = [];
  for await (const item of csvItems(chunked(text, cuts))) out.push(item);
  return out;
};

describe("CSV batch body", () => {
  it("when fields are quoted, escaped, empty or numeric, then each row becomes an item with its line", async () => {
    const csv = '\uFEFFimage, up_expansion_ratio ,prompt,watermark\r\nhttps://a/1.png,0.25,"a ""quoted"", prompt",TRUE\r\n\r\n"https://a/2.png",,plain,\n';
    expect(await readAll(csv)).toEqual([
      { line: 2, value: { image: "https://a/1.png", up_expansion_ratio: 0.25, prompt: 'a "quoted", prompt', watermark_info: { enabled: true } } },
      { line: 4, value: { image: "https://a/2.png", prompt: "plain" } },
    ]);
  });

  it("when a line has a stray or unclosed quote, then that line alone is reported and the next lines are read", async () => {
    const csv = 'image,prompt\nu1,"open\nu2,5" photo\nu3,"a"b\nu4,"fine, quoted"\nu5,x,y\n';
    expect(await readAll(csv)).toEqual([
      { line: 2, error: "is not valid CSV (an unclosed or misplaced quote)" },
      { line: 3, error: "is not valid CSV (an unclosed or misplaced quote)" },
      { line: 4, error: "is not valid CSV (an unclosed or misplaced quote)" },
      { line: 5, value: { image: "u4", prompt: "fine, quoted" } },
      { line: 6, error: "has 3 fields; the header names 2" },
    ]);
  });

  it("when the header row is not valid CSV, then only that is reported", async () => {
    expect(await readAll('\n"image,prompt\nu1,p\n')).toEqual([{ line: 2, error: "the header row is not valid CSV" }]);
  });

  it("when the body arrives in chunks cut anywhere, then the items are the same as from one chunk", async () => {
    const csv = 'image,prompt,n\nhttps://a/é.png,"café, ☕ ""x""",2\nu2,,\nu3,"bad\nu4,p,1';
    const whole = await readAll(csv);
    expect(whole).toHaveLength(4);
    await fc.assert(
      fc.asyncProperty(fc.array(fc.nat(), { maxLength: 6 }), async (cuts) => {
        expect(await readAll(csv, cuts)).toEqual(whole);
      }),
      { numRuns: 100 },
    );
  });
});
