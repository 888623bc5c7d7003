import { spawnService, type ChildService, type Exit, type ServiceKind } from "../support/child-processes.ts";

export type Crash = { kind: ServiceKind; exit: Exit; at: number; output: string };

export type SupervisedService = {
  kind: ServiceKind;
  // Starts it (again) and waits for its start line.
  start(): Promise<void>;
  // Kills it on purpose: the supervisor leaves it down until start() is called.
  kill(signal: NodeJS.Signals): Promise<Exit | undefined>;
  // SIGTERM (its own graceful shutdown), SIGKILL if that takes longer than graceMs.
  stop(graceMs?: number): Promise<void>;
  current(): ChildService | undefined;
  crashes: Crash[];
  restarts(): number;
};

// A supervisor starts a crashed service again after a short pause.
const RESTART_DELAY_MS = 500;

// One app process kept running the way systemd or Kubernetes would keep it: an exit we did not ask
// for is recorded as a crash (with the tail of what it printed) and the process is started again.
export const superviseService = (kind: ServiceKind, env: () => Record<string, string>, logFile?: string): SupervisedService => {
  let child: ChildService | undefined;
  let wanted = false;
  let restarts = 0;
  const crashes: Crash[] = [];

  const launch = (): ChildService => {
    const started = spawnService(kind, env(), logFile ? { logFile } : {});
    child = started;
    void started.exited.then((exit) => {
      if (!wanted || child !== started) return;
      crashes.push({ kind, exit, at: Date.now(), output: started.output().slice(-3_000) });
      setTimeout(() => {
        if (!wanted || child !== started) return;
        restarts++;
        launch();
      }, RESTART_DELAY_MS);
    });
    return started;
  };

  const kill = async (signal: NodeJS.Signals) => {
    wanted = false;
    const running = child;
    if (!running?.alive()) return undefined;
    return running.kill(signal);
  };

  return {
    kind,
    start: async () => {
      wanted = true;
      await launch().ready;
    },
    kill,
    stop: async (graceMs = 5_000) => {
      wanted = false;
      const running = child;
      if (!running?.alive()) return;
      const forced = setTimeout(() => void running.kill("SIGKILL"), graceMs);
      await running.kill("SIGTERM");
      clearTimeout(forced);
    },
    current: () => child,
    crashes,
    restarts: () => restarts,
  };
};
