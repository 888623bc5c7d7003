import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { e2eFiles, ownProcessFiles, unitFiles } from "../tiers.ts";

// The tier lists are kept by hand (test/tiers.ts); this keeps them honest as files are added.
const testFiles = async (dir: string): Promise<string[]> => {
  const entries = await readdir(dir, { withFileTypes: true });
  const nested = await Promise.all(
    entries.map((e) => (e.isDirectory() ? testFiles(path.join(dir, e.name)) : Promise.resolve(e.name.endsWith(".test.ts") ? [path.join(dir, e.name)] : []))),
  );
  return nested.flat();
};

// What makes a file e2e: it runs the programs as processes (the API, worker or stack spawned, the CLI).
const spawnsPrograms = /\b(spawnService|startFleet|runCli|runShell)\(/;
// What keeps a file out of unit: a database, Redis, a stack or a listening server.
const needsServices = /inject\("templateDatabaseUrl"\)|\bstartStack\(|new Redis\(|\.listen\(|startWebhookConsumer\(|startFileServer\(/;
// What needs a fresh test process: files share their worker's loaded modules (vitest.config.ts).
const changesProcessState = /process\.env(\.\w+|\[[^\]]+\])\s*=[^=]|delete process\.env|vi\.stubEnv\(|setGlobalTracerProvider\(/;

describe("test tiers", () => {
  it("when a test file spawns the programs, then it is listed in the e2e tier; a file that changes its process's state gets a process of its own; a unit file needs no service; no list names a missing file", async () => {
    const files = (await testFiles("test")).sort();
    const sources = new Map(await Promise.all(files.map(async (f) => [f, await readFile(f, "utf8")] as const)));
    const spawning = files.filter((f) => spawnsPrograms.test(sources.get(f)!));
    expect(spawning.filter((f) => !e2eFiles.includes(f))).toEqual([]);
    expect(unitFiles.filter((f) => needsServices.test(sources.get(f) ?? ""))).toEqual([]);
    expect([...unitFiles, ...e2eFiles, ...ownProcessFiles].filter((f) => !sources.has(f))).toEqual([]);
    // A file that changes its own process's state gets a fresh process: an e2e file listed there.
    expect(files.filter((f) => changesProcessState.test(sources.get(f)!) && !ownProcessFiles.includes(f))).toEqual([]);
    expect(ownProcessFiles.filter((f) => !e2eFiles.includes(f))).toEqual([]);
    expect(spawning.length).toBeGreaterThan(5);
  });
});
