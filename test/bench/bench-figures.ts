// Pure helpers of the benchmark: a seeded generator and the figures it prints.

// mulberry32: a seeded generator, so every run draws the same sequence of n.
export const seeded = (seed: number) => {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
};

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
export const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
export const mean = (xs: number[]) => (xs.length ? sum(xs) / xs.length : 0);
export const quantile = (xs: number[], q: number) => {
  if (!xs.length) return 0;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
};
export const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
export const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
export const dist = (xs: number[]) =>
  xs.length ? `mean ${s(mean(xs))}, p50 ${s(quantile(xs, 0.5))}, p95 ${s(quantile(xs, 0.95))}, max ${s(Math.max(...xs))} (${xs.length})` : "none";
