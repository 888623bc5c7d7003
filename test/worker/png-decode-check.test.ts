import { crc32, deflateSync, inflateSync } from "node:zlib";
import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { decodesInFull, pngDecodesInFull } from "../../apps/domain/expand-request/source-image.ts";

// A small plain PNG's pixel data is checked in JS (source-image.ts); it may only ever say "decodes"
// where sharp would, and leaves everything else to sharp. sharp's own answer is the reference.
const MAX_PIXELS = 100_000_000;
const base = () => sharp({ create: { width: 300, height: 200, channels: 3, background: "#369" } });
const plain = async () => ({
  rgb: await base().png().toBuffer(),
  rgba: await sharp({ create: { width: 333, height: 244, channels: 4, background: "#3698" } }).png().toBuffer(),
  gray: await base().grayscale().png().toBuffer(),
  sixteenBit: await base().toColourspace("rgb16").png().toBuffer(),
});
const sharpDecodes = async (png: Buffer) => {
  const { width, height } = await sharp(png).metadata();
  try {
    await sharp(png, { failOn: "truncated", sequentialRead: true }).extract({ left: 0, top: height! - 1, width: width!, height: 1 }).raw().toBuffer();
    return true;
  } catch {
    return false;
  }
};
type Chunk = { type: string; data: Buffer };
const chunksOf = (png: Buffer) => {
  const chunks: Chunk[] = [];
  for (let at = 8; at + 12 <= png.length; ) {
    const length = png.readUInt32BE(at);
    chunks.push({ type: png.toString("latin1", at + 4, at + 8), data: png.subarray(at + 8, at + 8 + length) });
    at += 12 + length;
  }
  return chunks;
};
// Chunks back into a PNG, every CRC right: only the edit makes it wrong.
const pngOf = (chunks: Chunk[]) =>
  Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    ...chunks.map(({ type, data }) => {
      const head = Buffer.alloc(8);
      head.writeUInt32BE(data.length, 0);
      head.write(type, 4, "latin1");
      const crc = Buffer.alloc(4);
      crc.writeUInt32BE(crc32(data, crc32(Buffer.from(type, "latin1"))), 0);
      return Buffer.concat([head, data, crc]);
    }),
  ]);
const withRows = (png: Buffer, edit: (rows: Buffer) => Buffer) => {
  const chunks = chunksOf(png);
  const rows = edit(inflateSync(Buffer.concat(chunks.filter((c) => c.type === "IDAT").map((c) => c.data))));
  const first = chunks.findIndex((c) => c.type === "IDAT");
  return pngOf([...chunks.slice(0, first), { type: "IDAT", data: deflateSync(rows) }, ...chunks.filter((c) => c.type !== "IDAT").slice(first)]);
};

describe("a PNG's pixel data checked in JS", () => {
  it("when a PNG is plain (grey, RGB, RGBA, 16-bit), then JS says it decodes, as sharp does", async () => {
    for (const [name, png] of Object.entries(await plain())) {
      expect({ name, sharp: await sharpDecodes(png) }).toEqual({ name, sharp: true });
      expect({ name, js: pngDecodesInFull(png, MAX_PIXELS) }).toEqual({ name, js: true });
    }
  });

  it("when a PNG is cut off, has a byte flipped (CRC fixed), too few rows or a bad filter, then JS leaves it to sharp, which refuses it", async () => {
    const { rgb } = await plain();
    const chunks = chunksOf(rgb);
    const idat = chunks.find((c) => c.type === "IDAT")!;
    const flipped = Buffer.from(idat.data);
    flipped[Math.floor(flipped.length / 2)]! ^= 0xff;
    const broken = {
      cutOff: rgb.subarray(0, Math.floor(rgb.length * 0.7)),
      flipped: pngOf(chunks.map((c) => (c === idat ? { type: "IDAT", data: flipped } : c))),
      tooFewRows: withRows(rgb, (rows) => rows.subarray(0, rows.length - (1 + 300 * 3) * 5)),
      badFilter: withRows(rgb, (rows) => (rows.fill(9, (1 + 300 * 3) * 150, (1 + 300 * 3) * 150 + 1), rows)),
      noEnd: pngOf(chunks.filter((c) => c.type !== "IEND")),
    };
    for (const [name, png] of Object.entries(broken)) {
      expect({ name, js: pngDecodesInFull(png, MAX_PIXELS) }).toEqual({ name, js: undefined });
      expect({ name, decodes: await decodesInFull(png, { width: 300, height: 200 }, MAX_PIXELS) }).toEqual({ name, decodes: await sharpDecodes(png) });
    }
    expect(await decodesInFull(broken.cutOff, { width: 300, height: 200 }, MAX_PIXELS)).toBe(false);
    expect(await decodesInFull(broken.tooFewRows, { width: 300, height: 200 }, MAX_PIXELS)).toBe(false);
  });

  it("when a PNG has a palette, is interlaced, is over the pixel limit or too big to inflate here, then it is sharp's to decide", async () => {
    const others = {
      palette: await base().png({ palette: true }).toBuffer(),
      interlaced: await base().png({ progressive: true }).toBuffer(),
      large: await sharp({ create: { width: 1200, height: 1000, channels: 4, background: "#3698" } }).png().toBuffer(),
    };
    for (const [name, png] of Object.entries(others)) {
      expect({ name, js: pngDecodesInFull(png, MAX_PIXELS) }).toEqual({ name, js: undefined });
      expect({ name, decodes: await decodesInFull(png, (await sharp(png).metadata()) as { width: number; height: number }, MAX_PIXELS) }).toEqual({ name, decodes: true });
    }
    expect(pngDecodesInFull((await plain()).rgb, 300 * 200 - 1)).toBeUndefined();
  });
});
