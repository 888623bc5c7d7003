import { timingSafeEqual } from "node:crypto";

// The one constant-time comparison (callback tokens, signatures, signed links): lengths are public,
// contents are compared without an early exit.
export const safeEqual = (a: string | Buffer, b: string | Buffer): boolean => {
  const x = typeof a === "string" ? Buffer.from(a) : a;
  const y = typeof b === "string" ? Buffer.from(b) : b;
  return x.length === y.length && timingSafeEqual(x, y);
};
