// Exponential backoff with full jitter, so that many tasks refused at once do not return at once.
export const backoffWithJitter = (attempt: number, baseMs: number, maxMs: number, random = Math.random): number => {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
};

// Polling slows down as a task ages: a quick task is checked soon, a slow one is not hammered.
export const nextPollDelayMs = (ageMs: number, graceMs: number, maxMs: number): number =>
  Math.min(maxMs, Math.max(graceMs, Math.round(ageMs / 4)));
