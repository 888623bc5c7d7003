import { spawn } from "node:child_process";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitUntil } from "../support/batches.ts";
import { cliEntry, runShell } from "../support/cli-runner.ts";
import { ratios, testImage } from "../support/fault-kit.ts";
import { call } from "../support/http.ts";
import { startStack, type Stack } from "../support/stack.ts";

// Ctrl-C in the middle of `download`: the image requests are held by a stalled network path (an
// HTTP forwarder in front of a second API whose PUBLIC_BASE_URL is the forwarder, so the signed
// links in the manifest go through it too), the CLI gets SIGINT, and must say what it saved and a
// resume command that works as printed.
let stack: Stack;
let forwarder: Server;
let forwarderUrl: string;
let work: string;
let imageRequests = 0;
let stalled = true;
const held = new Set<import("node:http").ServerResponse>();

beforeAll(async () => {
  stack = await startStack();
  forwarder = createServer(async (req, res) => {
    if (stalled && req.url?.startsWith("/files/")) {
      imageRequests++;
      held.add(res);
      return;
    }
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const upstream = await fetch(`${api.url}${req.url}`, {
      method: req.method,
      headers: Object.fromEntries(Object.entries(req.headers).filter(([k, v]) => typeof v === "string" && k !== "host" && k !== "connection")) as Record<string, string>,
      ...(chunks.length ? { body: Buffer.concat(chunks) } : {}),
    });
    res.writeHead(upstream.status, Object.fromEntries([...upstream.headers].filter(([k]) => k !== "content-encoding" && k !== "content-length" && k !== "transfer-encoding")));
    res.end(Buffer.from(await upstream.arrayBuffer()));
  });
  await new Promise<void>((resolve) => forwarder.listen(0, "127.0.0.1", () => resolve()));
  forwarderUrl = `http://127.0.0.1:${(forwarder.address() as AddressInfo).port}`;
  api = await stack.startApi({ PUBLIC_BASE_URL: forwarderUrl });
  work = await mkdtemp(path.join(tmpdir(), "kling-cli-int-"));
});
afterAll(async () => {
  for (const res of held) res.destroy();
  forwarder?.closeAllConnections();
  await new Promise((resolve) => forwarder?.close(resolve));
  await stack?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});
let api: Awaited<ReturnType<Stack["startApi"]>>;

describe("Ctrl-C during `download`", () => {
  it("when interrupted while images are being fetched, then it says what is saved and prints a resume command that works as printed", async () => {
    const { key } = await stack.newAccount();
    const image = await testImage();
    const created = await call(stack.api.url, "POST", "/v1/batches", { key, body: { name: "interrupted", defaults: ratios, items: [{ image }, { image }] } });
    expect(created.status).toBe(201);
    const batchId: string = created.body.id;
    await waitUntil(() => call(stack.api.url, "GET", `/v1/batches/${batchId}`, { key }), (r) => r.body.status === "completed", 60_000, "the batch completed");

    const out = path.join(work, "out");
    const child = spawn(process.execPath, [cliEntry, "download", batchId, "--out", out], {
      cwd: path.dirname(path.dirname(path.dirname(cliEntry))),
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", API_URL: forwarderUrl, API_KEY: key },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
    // Once the CLI waits on an image (held by the stalled path), press Ctrl-C.
    await waitUntil(async () => imageRequests, (n) => n > 0, 60_000, "an image request");
    child.kill("SIGINT");
    expect(await exited).toBe(130);
    expect(stderr).toContain(`Interrupted: 0 of 2 image(s) are saved in ${out} (with manifest.ndjson)`);
    expect(await readdir(out)).toEqual(["manifest.ndjson"]);
    const resume = /Resume with the same command.*\n\s+(.+)$/m.exec(stderr)?.[1];
    expect(resume).toBe(`node apps/cli/kling-expand.mjs download ${batchId} --out ${out}`);

    // The path is back: the printed command finishes the job.
    stalled = false;
    const resumed = await runShell(resume!, { API_URL: forwarderUrl, API_KEY: key });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect((await readdir(out)).filter((f) => f.endsWith(".png"))).toHaveLength(2);
  }, 120_000);
});
