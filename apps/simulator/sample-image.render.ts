import sharp from "sharp";
import { z } from "zod";

// A picture to expand when you have none at hand (the README's "Try it"): a gradient with a disc,
// so the expanded margins are easy to see.
export const sampleImageQuerySchema = z.object({
  width: z.coerce.number().int().min(300).max(4000).default(600),
  height: z.coerce.number().int().min(300).max(4000).default(400),
});

export const renderSampleImage = ({ width, height }: z.output<typeof sampleImageQuerySchema>): Promise<Buffer> => {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
    <defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="#f80"/><stop offset="1" stop-color="#08f"/></linearGradient></defs>
    <rect width="100%" height="100%" fill="url(#g)"/><circle cx="${width / 2}" cy="${height / 2}" r="${Math.min(width, height) / 4}" fill="#fff"/></svg>`;
  return sharp(Buffer.from(svg)).png().toBuffer();
};
