import sharp from "sharp";
import { expandedSize, type ExpansionRatios } from "../domain/expand-request/expand-limits.ts";

export type ExpansionLayout = {
  width: number;
  height: number;
  // Where the original sits inside the expanded canvas.
  left: number;
  top: number;
};

// The canvas is exactly expandedSize() (what the orchestrator checks results against); the right and
// bottom margins take whatever rounding leaves, which is never negative.
export const expansionLayout = (source: { width: number; height: number }, ratios: ExpansionRatios): ExpansionLayout => {
  const { width, height } = expandedSize(source, ratios);
  return {
    width,
    height,
    left: Math.min(Math.round(source.width * ratios.left), width - source.width),
    top: Math.min(Math.round(source.height * ratios.up), height - source.height),
  };
};

// A plausible outpainting: the new area is a blurred mirror of the source, with the sharp original
// on top. Images differ by blur strength, as a real model's variations would differ.
export const renderExpandedImages = async (source: Buffer, ratios: ExpansionRatios, n: number): Promise<Buffer[]> => {
  // Applies EXIF orientation first, as the provider measures the image the way it is displayed.
  const { data: original, info } = await sharp(source).rotate().png({ compressionLevel: 1 }).toBuffer({ resolveWithObject: true });
  const layout = expansionLayout(info, ratios);
  const margins = {
    top: layout.top,
    left: layout.left,
    bottom: layout.height - info.height - layout.top,
    right: layout.width - info.width - layout.left,
  };
  const images: Buffer[] = [];
  // One at a time: sharp already uses every core for one pipeline, and memory stays bounded.
  for (let index = 0; index < n; index += 1) {
    images.push(
      await sharp(original)
        .extend({ ...margins, extendWith: "mirror" })
        .blur(6 + index * 2)
        .composite([{ input: original, left: layout.left, top: layout.top }])
        .png()
        .toBuffer(),
    );
  }
  return images;
};
