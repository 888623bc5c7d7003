import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BatchView } from "../../apps/cli/batch-view.ts";
import { cliCommand } from "../../apps/cli/cli-name.ts";
import { imagesInManifest } from "../../apps/cli/download-batch.ts";
import { renderProgressBlock } from "../../apps/cli/progress-view.ts";

const sha = "b".repeat(64);
const done = (line: number, input: string, images = 1) =>
  JSON.stringify({ line, task_id: `t-${line}`, input, status: "succeeded", images: Array.from({ length: images }, (_, index) => ({ index, sha256: sha })) });

describe("downloaded results are named after their input", () => {
  it("when inputs have names, then p1.png gives p1_0.png, and the line number appears only to tell two same names apart", () => {
    const text = [
      done(1, "https://img.example/photos/p1.png", 2),
      done(2, "https://img.example/other/p2.jpeg"),
      done(3, "https://img.example/again/p1.png"),
      JSON.stringify({ line: 4, task_id: "t-4", input: "https://img.example/p4.png", status: "failed", images: [] }),
      done(5, "inline"),
      done(6, "https://img.example/a%20b/..%2F..%2Fetc%2Fpasswd"),
    ].join("\n");
    expect(imagesInManifest(text, "http://127.0.0.1:3000").map((w) => w.file)).toEqual([
      "p1_0.png",
      "p1_1.png",
      "p2_0.png",
      "p1.line3_0.png",
      "000005_0.png",
      "passwd_0.png",
    ]);
  });

  it("when an earlier line with the same name has not finished yet, then the names stay what they will be once it has", () => {
    const running = [JSON.stringify({ line: 1, task_id: "t-1", input: "https://x/p1.png", status: "processing", images: [] }), done(2, "https://y/p1.png")].join("\n");
    expect(imagesInManifest(running, "http://x").map((w) => w.file)).toEqual(["p1.line2_0.png"]);
  });
});

describe("the progress view's closing line", () => {
  it("when a batch has ended, then it gives tasks per second over the batch's life, not the last minute's rate", () => {
    const batch: BatchView = {
      id: "b1",
      name: null,
      status: "completed",
      counts: { succeeded: 90, failed: 10 },
      total: 100,
      percent: 100,
      eta_seconds: 0,
      // The API's recent rate, which says nothing of the whole run.
      throughput_per_second: 7.5,
      credits_spent: 90,
      credits_reserved: 0,
      created_at: "2026-11-28T10:00:00.000Z",
      finished_at: "2026-11-28T10:00:40.000Z",
      items: { accepted: 100, rejected: 0, lines_read: 100 },
    };
    const line = renderProgressBlock(batch, { color: false, width: 80 })[1]!;
    expect(line).toMatch(/done in 40s {2}2\.5 tasks\/s$/);
    expect(line).not.toContain("7.5");
  });
});

describe("hints are commands that work as printed", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "kling-cli-bin-"));
    await writeFile(path.join(dir, "kling-expand"), "#!/bin/sh\n");
    await chmod(path.join(dir, "kling-expand"), 0o755);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const script = "/repo/apps/cli/kling-expand.mjs";

  it("when run through `npm run cli`, then hints say `npm run cli --`", () => {
    expect(cliCommand({ npm_lifecycle_event: "cli", PATH: dir }, script, "/repo")).toBe("npm run cli --");
  });

  it("when the bin is on the PATH, then hints say kling-expand; when it is not, then they name node and the script", () => {
    expect(cliCommand({ PATH: `/nowhere:${dir}` }, script, "/repo")).toBe("kling-expand");
    expect(cliCommand({ PATH: "/nowhere" }, script, "/repo")).toBe("node apps/cli/kling-expand.mjs");
    expect(cliCommand({ PATH: "/nowhere" }, script, "/elsewhere")).toBe("node /repo/apps/cli/kling-expand.mjs");
  });
});
