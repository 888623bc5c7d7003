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

// Whether a text has at most `max` characters, counted as code points (as the provider counts
// them). Without building [...text]: a 2,500-character prompt spread into an array allocated ~40 KB
// per item, most of a JSON batch's garbage, whose volume let its chunks outlive young collections.
export const codePointsAtMost = (text: string, max: number): boolean => {
  if (text.length <= max) return true;
  if (text.length > 2 * max) return false;
  let count = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    // A high surrogate followed by a low one is one code point.
    if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
    }
    if (++count > max) return false;
  }
  return true;
};
