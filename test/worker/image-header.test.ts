import { crc32 } from "node:zlib";
import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { inspectSourceImage, readImageHeader } from "../../apps/domain/expand-request/source-image.ts";

// A PNG's header is read in JS (its IHDR) when it is plainly valid; anything else is sharp's. Either
// way the answer must be sharp's.
const base = () => sharp({ create: { width: 500, height: 320, channels: 3, background: "#369" } });
const variants = async () => ({
  rgb: await base().png().toBuffer(),
  rgba: await sharp({ create: { width: 333, height: 444, channels: 4, background: "#3698" } }).png().toBuffer(),
  gray: await base().grayscale().png().toBuffer(),
  palette: await base().png({ palette: true }).toBuffer(),
  sixteenBit: await base().toColourspace("rgb16").png().toBuffer(),
  interlaced: await base().png({ progressive: true }).toBuffer(),
});
const withIhdr = (png: Buffer, edit: (bytes: Buffer) => void, fixCrc = true) => {
  const bytes = Buffer.from(png);
  edit(bytes);
  if (fixCrc) bytes.writeUInt32BE(crc32(bytes.subarray(12, 29)), 29);
  return bytes;
};

describe("image header", () => {
  it("when a PNG is of any colour type, depth or interlacing, then its format and size are sharp's", async () => {
    for (const [name, png] of Object.entries(await variants())) {
      const meta = await sharp(png).metadata();
      const header = await readImageHeader(png);
      expect({ name, format: header.format, width: header.width, height: header.height }).toEqual({ name, format: meta.format, width: meta.width, height: meta.height });
    }
  });

  it("when a PNG carries an EXIF orientation that swaps the sides, then the check reports the swapped size", async () => {
    const rotated = await base().withMetadata({ orientation: 6 }).png().toBuffer();
    expect((await readImageHeader(rotated)).orientation).toBe(6);
    expect(await inspectSourceImage(rotated)).toMatchObject({ ok: true, info: { width: 320, height: 500 } });
  });

  it("when a PNG header lies about its size (CRC fixed), then the declared size is read, as sharp reads it", async () => {
    const liar = withIhdr((await variants()).rgb, (b) => (b.writeUInt32BE(16_000, 16), b.writeUInt32BE(16_000, 20)));
    expect(await readImageHeader(liar)).toMatchObject({ format: "png", width: 16_000, height: 16_000 });
  });

  it("when the IHDR's CRC or fields are wrong, then the answer is sharp's, whatever it is", async () => {
    const rgb = (await variants()).rgb;
    const bad = {
      crc: withIhdr(rgb, (b) => b.writeUInt32BE(501, 16), false),
      depth: withIhdr(rgb, (b) => (b[24] = 3)),
      zeroWidth: withIhdr(rgb, (b) => b.writeUInt32BE(0, 16)),
      notIhdr: withIhdr(rgb, (b) => b.write("IHDX", 12, "latin1")),
      // A whole IHDR behind something that is not the PNG signature is no PNG.
      notPngSignature: withIhdr(rgb, (b) => b.write("GIF89a", 0, "latin1")),
    };
    for (const [name, bytes] of Object.entries(bad)) {
      const settle = (read: Promise<{ format?: string; width?: number; height?: number }>) =>
        read.then(({ format, width, height }) => ({ name, format, width, height }), () => ({ name, error: true }));
      expect(await settle(readImageHeader(bytes))).toEqual(await settle(sharp(bytes, { limitInputPixels: false }).metadata()));
    }
  });

  it("when the image is a JPEG, then sharp reads it", async () => {
    const jpeg = await base().jpeg().toBuffer();
    expect(await readImageHeader(jpeg)).toMatchObject({ format: "jpeg", width: 500, height: 320 });
  });
});
