import { afterAll, describe, expect, it } from "vitest";
import { freePort, jsonLines, spawnApp, type Captured } from "./process-kit.ts";

// Every app's main.ts goes through runService: these run it in a real process and end that process
// every way it can end.
const fixture = "test/process/fixtures/fixture-service.main.ts";
const json = { LOG_FORMAT: "json", LOG_LEVEL: "info" };
// shutdown.ts's defaults: the drain after a crash, and after a requested stop.
const CRASH_DEADLINE_MS = 3_000;
const REQUESTED_STOP_DEADLINE_MS = 15_000;

// Hang guards only (nothing here is timed by the test's clock): a process started under tsx took
// over 30 s to say it had started in a run beside a CPU hog at load 22.
describe("a service process", { timeout: 120_000 }, () => {
  const started: Captured[] = [];
  const start = (entry: string, env: Record<string, string>, options: { ipc?: boolean } = {}) => {
    const proc = spawnApp(entry, env, options);
    started.push(proc);
    return proc;
  };
  afterAll(() => {
    for (const proc of started) if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill("SIGKILL");
  });

  it.each([
    ["throw", "uncaught exception", "fixture: thrown and not caught"],
    ["reject", "unhandled rejection", "fixture: rejected and not handled"],
  ])("when it %ss and nobody catches it, then one fatal line carries the stack, stop runs, and it exits 1", async (crash, kind, message) => {
    const proc = start(fixture, { ...json, FIXTURE_CRASH: crash });
    const exit = await proc.exited;
    expect(exit).toEqual({ code: 1, signal: null });
    // It exits because stop finished, under the short crash deadline, not because a deadline ran
    // out (a wall-clock bound here measured the machine's load as much as the process).
    const lines = jsonLines(proc.output());
    expect(lines.find((line) => line.msg === "stopping")).toMatchObject({ reason: kind, deadlineMs: CRASH_DEADLINE_MS });
    expect(lines.some((line) => line.msg === "stop did not finish in time; forcing exit")).toBe(false);
    const fatal = lines.filter((line) => line.level === 60);
    expect(fatal).toHaveLength(1);
    expect(fatal[0]).toMatchObject({ name: "fixture", kind, err: { message } });
    expect(fatal[0]!.err.stack).toContain("fixture-service.main.ts");
    expect(proc.output()).toContain("fixture: stop called");
  });

  it("when its stop hangs after a crash, then it still exits 1 at the short crash deadline", async () => {
    const proc = start(fixture, { ...json, FIXTURE_CRASH: "throw", FIXTURE_STOP: "hang" });
    expect(await proc.exited).toEqual({ code: 1, signal: null });
    // Read on the process's own clock (its log lines' times), from the line written as the
    // deadline was armed to the one its timer wrote: the test's clock would add the spawn, the
    // pipes and the exit, which a loaded machine stretches. The timer carries the deadline it was
    // armed with: the 3 s crash deadline, not the 15 s one a requested stop drains for.
    const lines = jsonLines(proc.output());
    const stopping = lines.find((line) => line.msg === "stopping");
    const forced = lines.find((line) => line.msg === "stop did not finish in time; forcing exit");
    expect(stopping).toMatchObject({ reason: "uncaught exception", deadlineMs: CRASH_DEADLINE_MS });
    expect(forced).toMatchObject({ reason: "uncaught exception", deadlineMs: CRASH_DEADLINE_MS });
    // Not before the deadline (a few ms for the timer armed just after the line's time was read).
    expect(forced!.time - stopping!.time).toBeGreaterThanOrEqual(CRASH_DEADLINE_MS - 20);
    expect(forced!.time - stopping!.time).toBeLessThan(REQUESTED_STOP_DEADLINE_MS);
  });

  it.each(["SIGTERM", "SIGINT", "SIGHUP"] as const)("when it gets %s, then it stops gracefully and exits 0", async (signal) => {
    const proc = start(fixture, json);
    await proc.waitFor("fixture started", 90_000);
    proc.child.kill(signal);
    expect(await proc.exited).toEqual({ code: 0, signal: null });
    expect(proc.output()).toContain("fixture: stop called");
    expect(jsonLines(proc.output()).find((line) => line.msg === "stopping")).toMatchObject({ reason: signal });
  });

  it("when the parent that started it with an IPC channel goes away, then it stops and exits", async () => {
    const proc = start(fixture, json, { ipc: true });
    await proc.waitFor("fixture started", 90_000);
    // What a SIGKILLed parent looks like from the child: the channel closes.
    proc.child.disconnect();
    expect(await proc.exited).toEqual({ code: 0, signal: null });
    expect(jsonLines(proc.output()).find((line) => line.msg === "stopping")).toMatchObject({ reason: "parent process gone" });
  });

  it("when a variable is invalid, then it exits 78 naming the variable, and nothing starts", async () => {
    const proc = start("apps/simulator/main.ts", { SIMULATOR_PORT: "not-a-port", LOG_FORMAT: "loud" });
    expect(await proc.exited).toEqual({ code: 78, signal: null });
    expect(proc.output()).toMatch(/SIMULATOR_PORT: must be a port number/);
    expect(proc.output()).toMatch(/LOG_FORMAT/);
  });

  it("when it cannot start (its port is taken), then one fatal line names the address and carries the stack, and it exits 98 (EX_PORT_IN_USE)", async () => {
    const first = start("apps/simulator/main.ts", { ...json, SIMULATOR_PORT: String(await freePort()) });
    const [, port] = (await first.waitFor(/"listen":"127\.0\.0\.1:(\d+)"/, 90_000)) as unknown as [string, string];
    const second = start("apps/simulator/main.ts", { ...json, SIMULATOR_PORT: port });
    expect(await second.exited).toEqual({ code: 98, signal: null });
    const fatal = jsonLines(second.output()).find((line) => line.level === 60);
    expect(fatal).toMatchObject({ msg: `simulator could not start: 127.0.0.1:${port} is in use (another process listens there)`, err: { code: "EADDRINUSE" } });
    expect(fatal!.err.stack).toMatch(/EADDRINUSE/);
    first.child.kill("SIGTERM");
    expect(await first.exited).toEqual({ code: 0, signal: null });
  });
});
