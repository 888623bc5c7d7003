import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { commandHelp } from "../../apps/cli/cli-help.ts";
import { runCli, runShell } from "../support/cli-runner.ts";
import { startFileServer } from "../support/file-server.ts";
import { freePort } from "../support/free-port.ts";
import { call } from "../support/http.ts";
import { makeImage } from "../support/images.ts";
import { startStack, type Stack } from "../support/stack.ts";

// Each CLI run is a Node process of its own (~1 s of CPU to start with tsx): generous timeouts for a
// busy machine, never a timing assertion.
vi.setConfig({ testTimeout: 180_000 });

let stack: Stack;
let files: Awaited<ReturnType<typeof startFileServer>>;
let work: string;
let env: Record<string, string>;
const commands = ["submit", "estimate", "status", "watch", "download", "cancel", "retry"];
const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");
const ratios = ["--up", "0.1", "--down", "0.1", "--left", "0.2", "--right", "0.2"];
// A watching submit reads the batch every --interval ms (1 s by default): at 100 ms it ends within
// a tenth of a second of the batch, not up to a second after it.
const watchClosely = ["--interval", "100"];
const createdId = (stderr: string) => /Batch (\S+) created\./.exec(stderr)?.[1] ?? /Already submitted as batch (\S+) /.exec(stderr)?.[1];
const manifestOf = async (dir: string) =>
  (await readFile(path.join(dir, "manifest.ndjson"), "utf8"))
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));

beforeAll(async () => {
  // A short attempt budget and a circuit that does not open, so provider errors fail tasks as
  // `retries_exhausted` (retryable) quickly in the retry test.
  stack = await startStack({ workerEnv: { SUBMIT_MAX_ATTEMPTS: "2", CIRCUIT_FAILURE_THRESHOLD: "1000" } });
  files = await startFileServer({ "/a.jpg": { body: await makeImage(500, 400, "jpeg"), contentType: "image/jpeg" } });
  work = await mkdtemp(path.join(tmpdir(), "kling-cli-"));
  await mkdir(path.join(work, "photos"));
  for (const [i, size] of [[400, 300], [320, 320], [300, 450]].entries()) {
    await writeFile(path.join(work, "photos", `p${i + 1}.png`), await makeImage(size[0]!, size[1]!));
  }
  await writeFile(path.join(work, "photos", "notes.txt"), "not an image: skipped");
  const { key } = await stack.newAccount();
  env = { API_URL: stack.api.url, API_KEY: key };
});
afterAll(async () => {
  await files?.stop();
  await stack?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe("the CLI as a subprocess", () => {
  it("when asked for help, then the tool and each command explain themselves and exit 0; with no command it exits 2", async () => {
    // Two commands' help through the bin; every command's text is checked in the module it prints from.
    const [main, none, submit, download] = await Promise.all([
      runCli(["--help"], {}),
      runCli([], {}),
      runCli(["submit", "--help"], {}),
      runCli(["download", "-h"], {}),
    ]);
    expect(main.code).toBe(0);
    expect(main.stdout).toMatch(/Exit codes:/);
    for (const c of commands) expect(main.stdout).toContain(`  ${c} `);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/Usage: kling-expand <command>/);
    expect(submit.code).toBe(0);
    expect(submit.stdout).toBe(`${commandHelp.submit}\n`);
    expect(download.code).toBe(0);
    expect(download.stdout).toBe(`${commandHelp.download}\n`);
    for (const c of commands) {
      expect(commandHelp[c]).toMatch(new RegExp(`^Usage: kling-expand ${c} `));
      expect(commandHelp[c]).toMatch(/--api-url/);
    }
  });

  it("when flags or arguments are wrong, then it exits 2 and says what is wrong before calling the API", async () => {
    // The API URL points nowhere: a usage error must be found without it.
    const nowhere = { API_URL: `http://127.0.0.1:${await freePort()}`, API_KEY: "k".repeat(20) };
    const cases: [string[], RegExp, Record<string, string>?][] = [
      [["frobnicate"], /Unknown command "frobnicate"/],
      [["submit", work, "--bogus"], /Unknown option '--bogus'/],
      [["submit", path.join(work, "photos"), "--up", "5"], /--up must be a number from 0 to 2/],
      [["submit", path.join(work, "missing")], /no such file or folder/],
      [["submit", path.join(work, "photos", "notes.txt")], /Cannot tell the format/],
      [["submit", "-", "--format", "xml"], /--format must be csv or ndjson/],
      [["download", "some-id"], /needs --out/],
      [["status", "x"], /No API key/, { API_URL: nowhere.API_URL }],
    ];
    const runs = [];
    // Four at a time: each is a Node process, and the machine has two cores.
    for (let i = 0; i < cases.length; i += 4) runs.push(...(await Promise.all(cases.slice(i, i + 4).map(([args, , e]) => runCli(args, e ?? nowhere)))));
    for (const [i, run] of runs.entries()) {
      expect(run.code, cases[i]![0].join(" ")).toBe(2);
      expect(run.stderr).toMatch(cases[i]![1]);
    }
  });

  it("when the API is not running, then it exits 4 and says how to start it; a refused key exits 3; an unknown batch exits 3", async () => {
    const port = await freePort();
    const [down, badKey, unknown] = await Promise.all([
      runCli(["status", "x"], { API_URL: `http://127.0.0.1:${port}`, API_KEY: "some-key-1234567890" }),
      runCli(["status", "x"], { API_URL: stack.api.url, API_KEY: "not-a-key-1234567890" }),
      runCli(["status", "01a2243d-7cb6-752c-af69-16fcb5a5dd50"], env),
    ]);
    expect(down.code).toBe(4);
    expect(down.stderr).toMatch(/Cannot reach the API at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/);
    expect(down.stderr).toMatch(/npm start/);
    expect(badKey.code).toBe(3);
    expect(badKey.stderr).toMatch(/refused the key \(401\)/);
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toMatch(/Not found \(404\)/);
  });

  it("when a folder is submitted twice, then one batch runs to the end with plain progress lines, and the second run follows it instead of submitting again", async () => {
    const first = await runCli(["submit", path.join(work, "photos"), ...ratios, ...watchClosely], env);
    expect(first.code, first.stderr).toBe(0);
    const batchId = createdId(first.stderr)!;
    expect(first.stderr).toMatch(/Uploading 3 item\(s\)/);
    // Not a terminal: plain lines, no escape sequences, the last one the end state.
    expect(first.stdout).not.toMatch(/\u001b\[/);
    expect(first.stdout.trim().split("\n").at(-1)).toMatch(new RegExp(`^batch ${batchId} completed 100\\.0% total=3 .*succeeded=3 failed=0`));
    expect(first.stderr).toMatch(/All 3 task\(s\) succeeded/);

    const again = await runCli(["submit", path.join(work, "photos"), ...ratios, ...watchClosely], env);
    expect(again.code).toBe(0);
    expect(again.stderr).toContain(`Already submitted as batch ${batchId}`);
    const listed = await call(stack.api.url, "GET", "/v1/batches", { key: env.API_KEY });
    expect(listed.body.data.map((b: { id: string }) => b.id)).toEqual([batchId]);

    // Other options are another submission.
    const estimate = await runCli(["estimate", path.join(work, "photos"), ...ratios, "--n", "2"], env);
    expect(estimate.code).toBe(0);
    expect(estimate.stdout).toMatch(/3 read, 3 valid, 0 refused/);
    expect(estimate.stdout).toMatch(/credits\s+6/);
    expect((await call(stack.api.url, "GET", "/v1/batches", { key: env.API_KEY })).body.data).toHaveLength(1);

    const status = await runCli(["status", batchId, "--json"], env);
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ id: batchId, status: "completed", counts: { succeeded: 3 } });

    // Download: the manifest and every image, each matching its sha256.
    const out = path.join(work, "out");
    const got = await runCli(["download", batchId, "--out", out], env);
    expect(got.code, got.stderr).toBe(0);
    expect(got.stdout).toMatch(/3\/3 image\(s\) \(3 downloaded, 0 already there/);
    const manifest = await manifestOf(out);
    expect(manifest.map((m) => m.line)).toEqual([1, 2, 3]);
    // Local images are named by their file, in the manifest and in the downloaded results.
    expect(manifest.map((m) => m.input)).toEqual(["p1.png", "p2.png", "p3.png"]);
    const names = ["p1_0.png", "p2_0.png", "p3_0.png"];
    for (const [i, name] of names.entries()) expect(sha256(await readFile(path.join(out, name)))).toBe(manifest[i].images[0].sha256);

    // Resumed: a missing and a damaged image are fetched again, the intact one is kept.
    await rm(path.join(out, names[0]!));
    await writeFile(path.join(out, names[1]!), "half an image");
    const keptAt = (await stat(path.join(out, names[2]!))).mtimeMs;
    const resumed = await runCli(["download", batchId, "--out", out], env);
    expect(resumed.code).toBe(0);
    expect(resumed.stdout).toMatch(/\(2 downloaded, 1 already there and intact\)/);
    for (const [i, name] of names.entries()) expect(sha256(await readFile(path.join(out, name)))).toBe(manifest[i].images[0].sha256);
    expect((await stat(path.join(out, names[2]!))).mtimeMs).toBe(keptAt);

    // A stored image that no longer matches its recorded sha256 is refused, never saved as good.
    await writeFile(path.join(stack.env.storageDir, manifest[0].images[0].location), await makeImage(300, 300));
    const tampered = path.join(work, "tampered");
    const bad = await runCli(["download", batchId, "--out", tampered], env);
    expect(bad.code).toBe(5);
    expect(bad.stderr).toMatch(/does not match the manifest's/);
    expect((await readdir(tampered)).sort()).toEqual([names[1], names[2], "manifest.ndjson"].sort());
  });

  it("when a CSV has a bad row and NDJSON comes on stdin, then the bad row is reported by line and name, the rest runs, and the exit code says so", async () => {
    const csv = path.join(work, "items.csv");
    await writeFile(
      csv,
      `image,up_expansion_ratio,n\n${files.url("/a.jpg")},,\nphotos/p2.png,0.3,2\nphotos/p3.png,5,\n`,
    );
    const run = await runCli(["submit", csv, ...ratios, ...watchClosely], env);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/1 item\(s\) refused:\n  line 3 \(photos\/p3\.png\): up_expansion_ratio: /);
    const batchId = createdId(run.stderr)!;
    const batch = await call(stack.api.url, "GET", `/v1/batches/${batchId}`, { key: env.API_KEY });
    expect(batch.body).toMatchObject({ status: "completed_with_errors", counts: { succeeded: 2 }, items: { accepted: 2, rejected: 1 } });
    // A local path is named as the CSV wrote it (the manifest's input, the task list's input_name),
    // and its results after its file (n = 2: p2_0, p2_1); a URL by its own name.
    const out = path.join(work, "csv-out");
    const got = await runCli(["download", batchId, "--out", out], env);
    expect(got.code, got.stderr).toBe(0);
    expect((await manifestOf(out)).map((m) => [m.line, m.input])).toEqual([[1, files.url("/a.jpg")], [2, "photos/p2.png"]]);
    expect((await readdir(out)).sort()).toEqual(["a_0.png", "manifest.ndjson", "p2_0.png", "p2_1.png"]);
    const listed = await call(stack.api.url, "GET", `/v1/batches/${batchId}/tasks`, { key: env.API_KEY });
    expect(listed.body.data.map((t: { batch_line: number; input_name: string | null }) => [t.batch_line, t.input_name])).toEqual([[1, null], [2, "photos/p2.png"]]);

    const piped = await runCli(["submit", "-", "--format", "ndjson", ...ratios, ...watchClosely, "--name", "from stdin"], env, {
      stdin: `${JSON.stringify({ image: files.url("/a.jpg"), n: 1 })}\n`,
    });
    expect(piped.code, piped.stderr).toBe(0);
    expect(piped.stderr).toMatch(/from standard input/);
  });

  it("when failed tasks are retried, then `retry` queues them again and watches them to success", async () => {
    await call(stack.simulator.url, "PATCH", "/_sim/config", { body: { error_rate: 1 } });
    const failing = await runCli(["submit", path.join(work, "photos"), ...ratios, ...watchClosely, "--name", "to retry"], env);
    expect(failing.code).toBe(1);
    const failingId = createdId(failing.stderr)!;
    // The hint names the command as this run was started (node and the script: the bin is not on
    // the PATH here), and works pasted into a shell as printed.
    const hint = /Retry the failed ones: (.+)$/m.exec(failing.stderr)?.[1];
    expect(hint).toBe(`node apps/cli/kling-expand.mjs retry ${failingId}`);

    await call(stack.simulator.url, "PATCH", "/_sim/config", { body: { error_rate: 0 } });
    const retried = await runShell(hint!, env);
    expect(retried.stderr).toMatch(/3 failed task\(s\) queued again/);
    expect(retried.code, retried.stderr).toBe(0);
    expect(retried.stdout.trim().split("\n").at(-1)).toMatch(/ completed 100\.0% .*succeeded=3 failed=0/);
  });

  // Its own stack without a worker: tasks stay queued for as long as the test needs, whatever the
  // machine's load, and a cancel ends them all at once.
  it("when stdout is a terminal, then bars are drawn and redrawn in place; when the batch is canceled, then watching ends `canceled` with exit 1", async () => {
    const idle = await startStack({ withWorker: false });
    try {
      const { key } = await idle.newAccount();
      const idleEnv = { API_URL: idle.api.url, API_KEY: key };
      const held = await runCli(["submit", path.join(work, "photos"), ...ratios, "--no-watch"], idleEnv);
      expect(held.code).toBe(0);
      const heldId = held.stdout.trim();
      // `script` gives the CLI a pseudo-terminal, as a person's shell would.
      const tty = startTerminal(`node ${JSON.stringify(path.resolve("apps/cli/kling-expand.mjs"))} watch ${heldId} --interval 200`, idleEnv);
      // Two redraws: the cursor went back up over the previous block twice.
      await tty.waitFor(/\u001b\[\d+F[^]*\u001b\[\d+F/);
      const canceled = await runCli(["cancel", heldId], idleEnv);
      expect(canceled.code).toBe(0);
      expect(canceled.stderr).toMatch(/cancel requested/);
      const { code, output } = await tty.exited;
      expect(output).toMatch(/queued\s+\u001b\[90m█+\u001b\[0m 3\/3/);
      expect(output).toMatch(/░/);
      expect(output).toMatch(/ canceled\s+\u001b\[33m█+\u001b\[0m 3\/3/);
      expect(output).toContain(`batch ${heldId}\u001b[0m (photos)  canceled`);
      expect(output).toMatch(/The batch ended canceled/);
      expect(code).toBe(1);
      const status = await runCli(["status", heldId], idleEnv);
      expect(status.stdout).toMatch(new RegExp(`^batch ${heldId} canceled 100\\.0% total=3 .*canceled=3`));
      expect(status.code).toBe(1);
    } finally {
      await idle.stop();
    }
  });
});

const startTerminal = (command: string, extraEnv: Record<string, string>) => {
  const child = spawn("script", ["-qec", command, "/dev/null"], { env: { ...process.env, ...extraEnv, TERM: "xterm-256color", COLUMNS: "100" } });
  let output = "";
  const waiters: { pattern: RegExp; resolve: () => void }[] = [];
  child.stdout.on("data", (d) => {
    output += d;
    for (const w of waiters.filter((w) => w.pattern.test(output))) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  });
  const exited = new Promise<{ code: number | null; output: string }>((resolve) => child.on("close", (code) => resolve({ code, output })));
  return {
    exited,
    waitFor: (pattern: RegExp) =>
      new Promise<void>((resolve, reject) => {
        if (pattern.test(output)) return resolve();
        waiters.push({ pattern, resolve });
        void exited.then(() => reject(new Error(`the terminal closed before ${pattern}: ${JSON.stringify(output)}`)));
      }),
  };
};
