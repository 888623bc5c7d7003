// Every timer the simulator starts, so stop() and reset can clear them all at once.
export const createTimerSet = () => {
  const timers = new Set<NodeJS.Timeout>();
  return {
    after(ms: number, fn: () => void): void {
      const timer = setTimeout(() => {
        timers.delete(timer);
        fn();
      }, ms);
      timers.add(timer);
    },
    clearAll(): void {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
    },
  };
};

export type TimerSet = ReturnType<typeof createTimerSet>;
