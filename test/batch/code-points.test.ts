import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { codePointsAtMost } from "../../apps/domain/expand-request/expand-limits.ts";

// A prompt's length limit counts code points, as [...text].length does, without building the array
// (a JSON batch validates 10,000 prompts of up to 2,500 characters twice).
describe("a text's length in code points", () => {
  it("when any text (lone surrogates included) is measured against any limit, then the answer is that of [...text].length", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 40 }), fc.nat(45), (text, max) => {
        expect(codePointsAtMost(text, max)).toBe([...text].length <= max);
      }),
      { numRuns: 2_000 },
    );
  });
});
