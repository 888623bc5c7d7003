import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import type { BatchView } from "../../apps/cli/batch-view.ts";
import { imagesInManifest } from "../../apps/cli/download-batch.ts";
import { CliError } from "../../apps/cli/exit-codes.ts";
import { formatDuration, renderProgressBlock, renderProgressLine } from "../../apps/cli/progress-view.ts";
import { batchQuery, rejectionsIn } from "../../apps/cli/submit-batch.ts";
import { fetchBatch } from "../../apps/cli/watch-batch.ts";

const batch: BatchView = {
  id: "b1",
  name: "photos",
  status: "running",
  counts: { queued: 2, submitting: 1, processing: 3, succeeded: 3, failed: 1, canceled: 0 },
  total: 10,
  percent: 40,
  eta_seconds: 95,
  throughput_per_second: 1.5,
  credits_spent: 4,
  credits_reserved: 6,
  created_at: "2026-11-28T10:00:00.000Z",
  finished_at: null,
  items: { accepted: 10, rejected: 0, lines_read: 10 },
};

describe("CLI parts", () => {
  it("when a batch runs, then the plain line groups statuses and shows the ETA", () => {
    expect(renderProgressLine(batch)).toBe("batch b1 running 40.0% total=10 queued=2 in_flight=4 succeeded=3 failed=1 canceled=0 eta=1m35s credits_spent=4 credits_reserved=6");
  });

  it("when a batch is drawn for a terminal, then every bar has the same width and counts add up", () => {
    // 80 columns leave 34 for each bar (the rest is labels and figures).
    const lines = renderProgressBlock(batch, { color: false, width: 80 });
    expect(lines[0]).toBe("batch b1 (photos)  running");
    expect(lines[1]).toMatch(/^  █{14}░{20}  40\.0%  ETA 1m 35s  1\.5\/s$/);
    const bars = lines.slice(2, 7).map((l) => /[█░]+/.exec(l)![0]);
    expect(new Set(bars.map((b) => b.length))).toEqual(new Set([34]));
    expect(lines.slice(2, 7).map((l) => /(\d+)\/10$/.exec(l)![1])).toEqual(["2", "4", "3", "1", "0"]);
    expect(renderProgressBlock(batch, { color: true, width: 80 }).join("\n")).toMatch(/\u001b\[32m/);
  });

  it("when durations are formatted, then unknown ETAs say so", () => {
    expect(formatDuration(null)).toBe("estimating");
    expect(formatDuration(59.6)).toBe("1m 00s");
    expect(formatDuration(7260)).toBe("2h 01m");
  });

  it("when the manifest is read, then only succeeded tasks' images are wanted, named by line, with their sha256", () => {
    const sha = "a".repeat(64);
    const text = [
      { line: 2, task_id: "t-2", status: "succeeded", images: [{ index: 0, url: "https://api.example/files/tasks/t-2/images/0?sig=1", sha256: sha }, { index: 1, url: "/v1/tasks/t-2/images/1.jpg", sha256: sha }] },
      { line: 3, task_id: "t-3", status: "failed", images: [] },
      { line: null, task_id: "t-4", status: "succeeded", images: [{ index: 0, sha256: sha }] },
    ]
      .map((l) => JSON.stringify(l))
      .join("\n");
    expect(imagesInManifest(text, "http://127.0.0.1:3000")).toEqual([
      { file: "000002_0.png", url: "https://api.example/files/tasks/t-2/images/0?sig=1", sha256: sha },
      { file: "000002_1.jpg", url: "http://127.0.0.1:3000/v1/tasks/t-2/images/1.jpg", sha256: sha },
      { file: "t-4_0.png", url: "http://127.0.0.1:3000/v1/tasks/t-4/images/0", sha256: sha },
    ]);
  });

  it("when a manifest line would name a file outside the folder or is not JSON, then the download stops with an API error", () => {
    const hostile = JSON.stringify({ line: null, task_id: "../../etc/x", status: "succeeded", images: [{ index: 0, sha256: "a".repeat(64) }] });
    expect(() => imagesInManifest(hostile, "http://x")).toThrow(CliError);
    expect(() => imagesInManifest("{not json", "http://x")).toThrow(/not JSON/);
    expect(() => imagesInManifest(JSON.stringify({ task_id: "t", status: "succeeded", images: [{ index: -1 }] }), "http://x")).toThrow(CliError);
  });

  it("when the API refuses items, then each line is reported once with the input's own name", () => {
    const answer = {
      intake: {
        rejected: 2,
        errors: [
          { line: 2, field: "up_expansion_ratio", message: "must be between 0 and 2" },
          { line: 2, field: "n", message: "must be from 1 to 9" },
          { line: 5, field: "image", message: "is not a valid URL" },
        ],
      },
    };
    expect(rejectionsIn(answer, ["a.png", "b.png", "c.png", "d.png", "e.png"])).toEqual([
      { line: 2, label: "b.png", reason: "up_expansion_ratio: must be between 0 and 2; n: must be from 1 to 9" },
      { line: 5, label: "e.png", reason: "image: is not a valid URL" },
    ]);
  });

  it("when batch options are given, then they become the provider's field names as query parameters", () => {
    expect(batchQuery({ up: 0.1, down: 0, left: 0.5, right: 0.5, prompt: "sea", n: 2, name: "x" }, { dry_run: "true" }).toString()).toBe(
      "name=x&up_expansion_ratio=0.1&down_expansion_ratio=0&left_expansion_ratio=0.5&right_expansion_ratio=0.5&prompt=sea&n=2&dry_run=true",
    );
  });

  it("when the API answers an error through the typed client, then the CLI's message and exit code say what it answered", async () => {
    // Each path answers one way, as a broken or foreign server might.
    const answers: Record<string, { status: number; type?: string; body: string }> = {
      "/v1/batches/problem": { status: 503, type: "application/problem+json", body: JSON.stringify({ title: "Unavailable", detail: "Postgres is down", errors: [{ field: "x", message: "y" }] }) },
      "/v1/batches/text": { status: 502, type: "text/plain", body: "bad gateway" },
      "/v1/batches/empty": { status: 500, body: "" },
      "/v1/batches/key": { status: 401, type: "application/problem+json", body: JSON.stringify({ detail: "unknown key" }) },
      "/v1/batches/nobody": { status: 200, body: "" },
    };
    const server = createServer((req, res) => {
      const answer = answers[req.url ?? ""] ?? { status: 418, body: "" };
      res.writeHead(answer.status, answer.type ? { "content-type": answer.type } : {}).end(answer.body);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const target = { apiUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, apiKey: "k" };
    const failure = (id: string) => fetchBatch(target, id).then(() => undefined, (error: unknown) => error as CliError);
    try {
      const [problem, text, empty, key, nobody] = await Promise.all(["problem", "text", "empty", "key", "nobody"].map(failure));
      expect([problem, text, empty, key, nobody].map((e) => e?.exitCode)).toEqual([3, 3, 3, 3, 3]);
      expect(problem?.message).toBe("The API answered 503: Postgres is down\n  x: y");
      expect(text?.message).toBe("The API answered 502: HTTP 502: bad gateway");
      expect(empty?.message).toBe("The API answered 500: HTTP 500");
      expect(key?.message).toBe("The API refused the key (401): unknown key");
      expect(key?.hint).toMatch(/API_KEY/);
      expect(nobody?.message).toBe("The API answered 200 with no body.");
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
