// A flag a listener raises and a loop waits on. A poke that arrives while nobody waits is kept, so
// a change between a read and the next wait is not slept through.
export type Wakeup = {
  poke(): void;
  // Resolves on a poke, after `ms`, or when the signal aborts, whichever is first.
  wait(ms: number, signal?: AbortSignal): Promise<void>;
};

export const createWakeup = (): Wakeup => {
  let pending = false;
  let wake: (() => void) | undefined;
  return {
    poke() {
      pending = true;
      wake?.();
    },
    wait(ms, signal) {
      if (pending || signal?.aborted) {
        pending = false;
        return Promise.resolve();
      }
      return new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", done);
          wake = undefined;
          pending = false;
          resolve();
        };
        const timer = setTimeout(done, ms);
        signal?.addEventListener("abort", done, { once: true });
        wake = done;
      });
    },
  };
};
