import { crc32 } from "node:zlib";
import sharp from "sharp";
import { renderSampleImage } from "../../apps/simulator/sample-image.render.ts";

// Test images made on the spot (the simulator's sample picture): a gradient with a shape, so
// expansions are visibly real.
export const makeImage = async (width: number, height: number, format: "png" | "jpeg" = "png"): Promise<Buffer> => {
  const png = await renderSampleImage({ width, height });
  return format === "png" ? png : sharp(png).jpeg({ quality: 85 }).toBuffer();
};

export const imageSize = async (bytes: Buffer) => {
  const meta = await sharp(bytes).metadata();
  return { width: meta.width, height: meta.height, format: meta.format };
};

// A valid 300x300 PNG padded to exactly `size` bytes with a private ancillary chunk ("prVt") before
// IEND, which decoders skip: the file stays a valid image whatever its size.
export const paddedPng = async (size: number): Promise<Buffer> => {
  const base = await makeImage(300, 300);
  const iend = base.subarray(base.length - 12);
  const dataLength = size - base.length - 12;
  const head = Buffer.alloc(8);
  head.writeUInt32BE(dataLength, 0);
  head.write("prVt", 4, "ascii");
  const data = Buffer.alloc(dataLength, 0x20);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(data, crc32(head.subarray(4))), 0);
  return Buffer.concat([base.subarray(0, base.length - 12), head, data, crc, iend]);
};
