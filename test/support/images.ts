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
