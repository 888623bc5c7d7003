// Pure helpers of the benchmark: the figures it prints. (Its seeded generator is the simulator's,
// apps/simulator/seeded-random.ts, so every run draws the same sequence.)

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
export const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
export const mean = (xs: number[]) => (xs.length ? sum(xs) / xs.length : 0);
export const quantile = (xs: number[], q: number) => {
  if (!xs.length) return 0;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
};
// The middle value; of an even count, the mean of the two middle ones (not the upper one).
export const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length / 2;
  return sorted.length % 2 ? sorted[Math.floor(mid)]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
export const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
export const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
export const dist = (xs: number[]) =>
  xs.length ? `mean ${s(mean(xs))}, p50 ${s(quantile(xs, 0.5))}, p95 ${s(quantile(xs, 0.95))}, max ${s(Math.max(...xs))} (${xs.length})` : "none";

// A benchmark knob from the environment: unset or empty takes the default; anything else must be a
// number >= min, or the run stops naming the variable (a typo must not measure the default silently).
export const envNumber = (name: string, fallback: number, min = 0) => {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min) throw new Error(`${name}: expected a number >= ${min}, got '${raw}'`);
  return value;
};
