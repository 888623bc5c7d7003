import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, waitForTask } from "../support/http.ts";
import { makeImage } from "../support/images.ts";
import { taskRow } from "../support/rows.ts";
import { startStack, type Stack } from "../support/stack.ts";

// URL images are downloaded in a stage of their own, with a total deadline per download and a
// share per account: one account's slow image hosts cannot delay another account's tasks, and what
// will not pass on a retry fails at once.

let stack: Stack;
let images: Server;
let base: string;
let photo: Buffer;
const trickling = new Set<import("node:http").ServerResponse>();
// When the image host saw things happen: the order proves who waited for whom.
// (Each quick image is requested once, by our worker: the provider is given our stored copy.)
const seen = { slowEnded: [] as number[], quickRequested: new Map<string, number>() };

beforeAll(async () => {
  photo = await makeImage(400, 300);
  images = createServer((req, res) => {
    if (req.url?.startsWith("/slow/")) {
      // One byte a second, for ever: only the download's total deadline ends it.
      res.writeHead(200, { "content-type": "image/png", "content-length": photo.length });
      trickling.add(res);
      let sent = 0;
      const timer = setInterval(() => res.write(photo.subarray(sent, ++sent)), 1_000);
      res.on("close", () => {
        clearInterval(timer);
        trickling.delete(res);
        seen.slowEnded.push(Date.now());
      });
      return;
    }
    if (req.url?.startsWith("/good/") && !seen.quickRequested.has(req.url)) seen.quickRequested.set(req.url, Date.now());
    if (req.url?.startsWith("/good/")) return res.writeHead(200, { "content-type": "image/png" }).end(photo);
    res.writeHead(404).end("no such image");
  });
  await new Promise<void>((resolve) => images.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(images.address() as AddressInfo).port}`;
  stack = await startStack({
    workerEnv: {
      IMAGE_FETCH_TOTAL_TIMEOUT_MS: "4000",
      // As many download slots as the slow account has tasks: without a share per account, its
      // downloads would hold them all. Three slow tasks, two at a time, two 4 s tries each: the
      // run waits 12 s for them (it was four, 16 s, and six, 24 s, for the same claim).
      SOURCE_CONCURRENCY: "3",
      SOURCE_ACCOUNT_CONCURRENCY: "2",
      SUBMIT_MAX_ATTEMPTS: "2",
      SUBMIT_RETRY_BASE_MS: "300",
      SUBMIT_RETRY_MAX_MS: "300",
    },
  });
});
afterAll(async () => {
  for (const res of trickling) res.destroy();
  images?.closeAllConnections();
  await new Promise((resolve) => images?.close(resolve));
  await stack?.stop();
});

const body = (image: string) => ({ image, up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1 });

const submit = async (key: string, url: string) => {
  const answer = await call(stack.api.url, "POST", "/v1/tasks", { key, body: body(url) });
  expect(answer.status, JSON.stringify(answer.body)).toBe(202);
  return answer.body.id as string;
};

describe("slow image hosts", () => {
  it("when one account's images trickle a byte a second, then another account's tasks still go through promptly, and the slow ones end at the total deadline with the reason", async () => {
    const slow = await stack.newAccount();
    const quick = await stack.newAccount();
    const slowIds = await Promise.all(Array.from({ length: 3 }, (_, i) => submit(slow.key, `${base}/slow/${i}.png`)));
    // While the slow account's downloads hang, its waiting tasks say what they wait for.
    const waiting = await waitForTask(stack.api.url, slow.key, slowIds[0]!, ["queued"]);
    expect(waiting.status_message).toMatch(/downloading and checking the source image|retrying the image download/);

    const started = Date.now();
    const quickIds = await Promise.all(Array.from({ length: 3 }, (_, i) => submit(quick.key, `${base}/good/${i}.png`)));
    for (const id of quickIds) expect((await waitForTask(stack.api.url, quick.key, id, ["succeeded", "failed"], 20_000)).status).toBe("succeeded");
    const quickMs = Date.now() - started;
    // The quick account's images were fetched before any slow download had ended: they did not
    // wait for a download slot held by the slow account.
    expect(seen.quickRequested.size).toBe(3);
    const firstSlowEnd = Math.min(...seen.slowEnded, Number.POSITIVE_INFINITY);
    expect(Math.max(...seen.quickRequested.values()), `quick account took ${quickMs} ms`).toBeLessThan(firstSlowEnd);
    const stillSlow = await Promise.all(slowIds.map(async (id) => (await call(stack.api.url, "GET", `/v1/tasks/${id}`, { key: slow.key })).body.status));
    expect(stillSlow.filter((s) => s === "queued").length).toBeGreaterThan(0);

    // A retried download says so, with its reason, while it waits.
    const retrying = await waitUntil(async () => {
      for (const id of slowIds) {
        const task = (await call(stack.api.url, "GET", `/v1/tasks/${id}`, { key: slow.key })).body;
        if (/retrying the image download \(try 2 of 2\): .*timed out/.test(task.status_message)) return task;
      }
      return undefined;
    });
    expect(retrying.status).toBe("queued");
    const drop = await call(stack.api.url, "GET", `/kling/v1/images/editing/expand/${retrying.id}`, { key: slow.key });
    expect(drop.body.data).toMatchObject({ task_status: "submitted", task_status_msg: retrying.status_message });

    for (const id of slowIds) {
      const done = await waitForTask(stack.api.url, slow.key, id, ["succeeded", "failed"], 60_000);
      expect(done).toMatchObject({ status: "failed", failure: { class: "retries_exhausted", message: expect.stringMatching(/could not be downloaded after 2 tries: .*timed out/) } });
    }
  }, 90_000);
});

describe("image URLs that will not work on a retry", () => {
  it.each([
    { what: "a 404", url: () => `${base}/missing.png`, reason: /HTTP 404/ },
    { what: "an unknown host", url: () => "http://no-such-image-host.invalid/photo.png", reason: /does not resolve/ },
  ])("when the image URL is $what, then the task fails at once with the reason, without a retry", async ({ url, reason }) => {
    const { key } = await stack.newAccount();
    const id = await submit(key, url());
    const done = await waitForTask(stack.api.url, key, id, ["succeeded", "failed"], 10_000);
    expect(done).toMatchObject({ status: "failed", failure: { class: "invalid_image", message: expect.stringMatching(reason) } });
    expect((await taskRow(stack.db, id)).transientFailures).toBe(0);
  });
});

const waitUntil = async <T>(probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = await probe();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
};
