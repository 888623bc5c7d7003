import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningApi } from "../../apps/api/api.server.ts";
import { postBatchStream, ndjsonLines } from "../support/batches.ts";
import { freePort } from "../support/free-port.ts";
import { call } from "../support/http.ts";
import { makeImage } from "../support/images.ts";
import { startStack, type Stack } from "../support/stack.ts";

// Storage that cannot be written is an outage of a dependency, like Postgres or Redis: the caller
// gets 503 with Retry-After (nothing stored, send it again), never a 500, and /readyz names it.
// Tests run as root, whom file modes do not stop: the storage directory here sits below a regular
// file, which fails every mkdir (ENOTDIR) for root too. S3 "down" is an endpoint nobody listens on.
describe("storage that cannot be written", () => {
  let stack: Stack;
  let scratch: string;
  let image: string;
  const ratios = { up_expansion_ratio: 0.1, down_expansion_ratio: 0, left_expansion_ratio: 0, right_expansion_ratio: 0 };
  const broken: Record<string, RunningApi> = {};
  beforeAll(async () => {
    stack = await startStack({ withWorker: false });
    scratch = await mkdtemp(path.join(tmpdir(), "kling-unwritable-"));
    await writeFile(path.join(scratch, "a-file"), "not a directory");
    broken.local = await stack.startApi({ STORAGE_DIR: path.join(scratch, "a-file", "storage") });
    broken.s3 = await stack.startApi({
      STORAGE_BACKEND: "s3",
      S3_BUCKET: "down",
      S3_ENDPOINT: `http://127.0.0.1:${await freePort()}`,
      S3_FORCE_PATH_STYLE: "true",
      S3_ACCESS_KEY_ID: "k",
      S3_SECRET_ACCESS_KEY: "s",
      S3_TIMEOUT_MS: "2000",
    });
    image = (await makeImage(300, 300)).toString("base64");
  }, 60_000);
  afterAll(async () => {
    await stack?.stop();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it.each(["local", "s3"])("when the %s store refuses writes, then creates and batches answer 503 with Retry-After, and /readyz says storage", async (kind) => {
    const api = broken[kind]!;
    const { key } = await stack.newAccount();
    const created = await call(api.url, "POST", "/v1/tasks", { key, body: { image, ...ratios } });
    expect(created.status).toBe(503);
    expect(created.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(created.body).toMatchObject({ status: 503, detail: expect.stringMatching(/storage/i) });

    const dropin = await call(api.url, "POST", "/v1/images/editing/expand", { key, body: { image, ...ratios } });
    expect(dropin.status).toBe(503);
    expect(dropin.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(dropin.body).toMatchObject({ code: 5001, message: expect.stringMatching(/storage/i) });

    const batch = await postBatchStream(api.url, key, ndjsonLines(3, (i) => ({ image, external_task_id: `b-${i}`, ...ratios })));
    expect(batch.status).toBe(503);
    expect(batch.headers["retry-after"]).toMatch(/^\d+$/);
    expect(batch.body.detail).toMatch(/storage/i);

    // Nothing was half-written: no task exists for the account.
    const list = await call(stack.api.url, "GET", "/v1/tasks", { key });
    expect(list.body.data).toEqual([]);

    const ready = await call(api.url, "GET", "/readyz");
    expect(ready.status).toBe(503);
    expect(ready.body).toMatchObject({ status: "not_ready", checks: { postgres: { ok: true }, redis: { ok: true }, storage: { ok: false, error: expect.any(String) } } });
  }, 60_000);

  it("when the store is writable, then /readyz says storage is fine", async () => {
    const ready = await call(stack.api.url, "GET", "/readyz");
    expect(ready.status).toBe(200);
    expect(ready.body.checks.storage).toMatchObject({ ok: true });
  });
});
