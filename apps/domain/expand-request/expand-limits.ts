// The provider's documented limits (KLING.md, "Create: request body"). One home, so intake, the
// worker's URL-image check and the simulator all reject exactly the same things.
export const expandLimits = {
  maxImageBytes: 10 * 1024 * 1024,
  minSidePx: 300,
  minAspect: 1 / 2.5,
  maxAspect: 2.5,
  minRatio: 0,
  maxRatio: 2,
  maxAreaFactor: 3,
  maxPromptChars: 2500,
  minImages: 1,
  maxImages: 9,
  maxExternalTaskIdChars: 256,
  // Ours, not the provider's (it documents none): a 249 KB PNG may declare 16000x16000 and cost a
  // provider task before it fails. 40 megapixels is above any camera image the 10 MB cap admits in
  // practice (e.g. 8000x5000), and bounds what decoding one image can cost.
  maxSourcePixels: 40_000_000,
} as const;

export type ExpansionRatios = { up: number; down: number; left: number; right: number };

// Ratios are multiples of the source's height (up/down) and width (left/right).
export const areaFactor = (r: ExpansionRatios): number => (1 + r.up + r.down) * (1 + r.left + r.right);

export const expandedSize = (source: { width: number; height: number }, r: ExpansionRatios) => ({
  width: Math.round(source.width * (1 + r.left + r.right)),
  height: Math.round(source.height * (1 + r.up + r.down)),
});
