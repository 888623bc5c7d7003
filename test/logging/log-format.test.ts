import { describe, expect, it } from "vitest";
import { baseEnv, jsonLines, spawnApp, spawnCaptured } from "../process/process-kit.ts";

// LOG_FORMAT: readable lines in a terminal, JSON elsewhere. The fixture service crashes on purpose,
// so each run ends by itself after an info line and a fatal line with a stack.
const fixture = "test/process/fixtures/fixture-service.main.ts";
const crash = { FIXTURE_CRASH: "throw", LOG_LEVEL: "info" };
const ansi = /\u001b\[[\d;]*m/;

const expectPretty = (output: string) => {
  const plain = output.replace(/\u001b\[[\d;]*m/g, "");
  expect(plain).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO \(fixture\): fixture started/m);
  expect(plain).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] FATAL \(fixture\): uncaught exception; exiting/m);
  expect(plain).toMatch(/fixture: thrown and not caught/);
  expect(plain).toMatch(/at Timeout\./);
  expect(jsonLines(plain)).toEqual([]);
};

describe("log format", () => {
  it("when stdout is not a terminal and LOG_FORMAT is unset, then every line is JSON", async () => {
    const proc = spawnApp(fixture, crash);
    expect(await proc.exited).toMatchObject({ code: 1 });
    const lines = jsonLines(proc.output());
    expect(lines.map((l) => l.msg)).toEqual(expect.arrayContaining(["fixture started", "uncaught exception; exiting"]));
    expect(proc.output()).not.toMatch(/INFO \(fixture\)/);
  });

  it("when LOG_FORMAT=pretty, then lines are readable, errors with their stack, even into a pipe", async () => {
    const proc = spawnApp(fixture, { ...crash, LOG_FORMAT: "pretty" });
    expect(await proc.exited).toMatchObject({ code: 1 });
    expectPretty(proc.output());
    expect(proc.output()).not.toMatch(ansi);
  });

  it("when stdout is a terminal and LOG_FORMAT is unset, then lines are readable and coloured; LOG_FORMAT=json still forces JSON", async () => {
    // util-linux `script` gives the command a pseudo-terminal, as a person's shell would.
    const inTerminal = (env: Record<string, string>) =>
      spawnCaptured("script", ["-qefc", `${process.execPath} --import tsx ${fixture}`, "/dev/null"], {
        env: { ...baseEnv(), TERM: "xterm-256color", ...crash, ...env },
      });
    const auto = inTerminal({});
    expect(await auto.exited).toMatchObject({ code: 1 });
    expect(auto.output()).toMatch(ansi);
    expectPretty(auto.output().replaceAll("\r\n", "\n"));

    const forced = inTerminal({ LOG_FORMAT: "json" });
    expect(await forced.exited).toMatchObject({ code: 1 });
    expect(jsonLines(forced.output().replaceAll("\r\n", "\n")).map((l) => l.msg)).toContain("uncaught exception; exiting");
  });
});
