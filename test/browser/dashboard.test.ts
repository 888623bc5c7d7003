/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
import { mkdir } from "node:fs/promises";
import path from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNativeClient, waitForTask, type NativeClient } from "../../apps/client/native-client.ts";
import { expandedSize } from "../../apps/domain/expand-request/expand-limits.ts";
import { launchChromium } from "../support/browser.ts";
import { makeImage } from "../support/images.ts";
import { startStack, type Stack } from "../support/stack.ts";

const screenshotPath = path.resolve("test-results/dashboard.png");
const batchScreenshotPath = path.resolve("test-results/dashboard-batch.png");

let stack: Stack;
let browser: Browser;
let page: Page;
let client: NativeClient;
let key: string;
const pageErrors: string[] = [];

beforeAll(async () => {
  // The provider takes 2.5 s per task, so progress can be watched moving.
  // Loopback image URLs accepted at intake: a batch item whose source the provider cannot read.
  stack = await startStack({ simulatorEnv: { SIM_RUN_MS: "2500" }, apiEnv: { ALLOWED_PRIVATE_HOSTS: "127.0.0.1" } });
  ({ key } = await stack.newAccount());
  client = createNativeClient({ baseUrl: stack.api.url, apiKey: key });
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on("pageerror", (error) => pageErrors.push(error.message));
}, 90_000);
afterAll(async () => {
  await browser?.close();
  await stack?.stop();
});

const submit = async (width: number, height: number, ratios: { up: number; down: number; left: number; right: number }) => {
  const image = (await makeImage(width, height)).toString("base64");
  const { data, error } = await client.POST("/v1/tasks", {
    body: { image, up_expansion_ratio: ratios.up, down_expansion_ratio: ratios.down, left_expansion_ratio: ratios.left, right_expansion_ratio: ratios.right },
  });
  if (error) throw new Error(error.detail);
  return { id: data.id, width, height, ratios };
};

describe("the dashboard at /, in headless Chromium", () => {
  it("when a wrong key is given, then sign-in is refused and nothing is stored", async () => {
    await page.goto(`${stack.api.url}/`);
    await page.fill("#api-key", "wrong-key-0123456789");
    await page.click("#sign-in-form button");
    await expect.poll(() => page.textContent("#sign-in-error")).toContain("not valid");
    expect(await page.evaluate(() => sessionStorage.getItem("kling.apiKey"))).toBeNull();
    expect(await page.isHidden("#main")).toBe(true);
  });

  it("when signed in while tasks run, then progress moves, the provider's slots show, and the gallery shows each result at its real size with the source outlined; a failure shows its reason", async () => {
    await page.fill("#api-key", key);
    await page.click("#sign-in-form button");
    await page.waitForSelector("#main:not([hidden])");

    // One refused by the provider (a policy refusal: no retry), for its reason in the gallery.
    await fetch(`${stack.simulator.url}/_sim/config`, { method: "PATCH", headers: { "content-type": "application/json" }, body: JSON.stringify({ create_error_code: 1301 }) });
    const refused = await submit(300, 300, { up: 0.2, down: 0.2, left: 0.2, right: 0.2 });
    expect((await waitForTask(client, refused.id)).status).toBe("failed");
    await fetch(`${stack.simulator.url}/_sim/config`, { method: "PATCH", headers: { "content-type": "application/json" }, body: JSON.stringify({ create_error_code: null }) });

    const tasks = [
      await submit(400, 300, { up: 0.25, down: 0.25, left: 0.5, right: 0.25 }),
      await submit(320, 480, { up: 0.1, down: 0.3, left: 0.2, right: 0.2 }),
    ];

    // What the page shows for the first task's progress, sampled until it is done.
    const seen: number[] = [];
    const watched = `#task-rows tr[data-task-id="${tasks[0]!.id}"]`;
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const progress = await page.getAttribute(watched, "data-progress").catch(() => null);
      if (progress !== null && seen.at(-1) !== Number(progress)) seen.push(Number(progress));
      if (progress === "5") break;
      await page.waitForTimeout(100);
    }
    expect(seen.at(-1)).toBe(5);
    // Seen part-way (under load the first sample may already be at the provider), then done.
    expect(seen.length, `progress values seen: ${seen.join(",")}`).toBeGreaterThanOrEqual(2);
    expect(seen[0]).toBeLessThan(5);
    expect([...seen].sort((a, b) => a - b)).toEqual(seen);
    expect(await page.textContent("#slots-text")).toMatch(/in use of \d+ usable/);
    expect(await page.textContent("#provider-state")).toBe("available");

    for (const task of tasks) expect((await waitForTask(client, task.id)).status).toBe("succeeded");
    for (const task of tasks) {
      const pair = `#gallery .pair[data-task-id="${task.id}"]`;
      await page.waitForSelector(`${pair} img[alt="result 0"]`);
      // Loaded images, decoded by the browser: their real pixel sizes.
      const shown = await page.$eval(pair, async (node) => {
        const imgs = [...node.querySelectorAll("img")];
        await Promise.all(imgs.map((img) => (img.complete ? undefined : new Promise((r) => img.addEventListener("load", r, { once: true })))));
        const source = node.querySelector<HTMLImageElement>('img[alt="source"]')!;
        const result = node.querySelector<HTMLImageElement>('img[alt="result 0"]')!;
        const outline = node.querySelector<HTMLElement>(".outline")!.getBoundingClientRect();
        const box = result.getBoundingClientRect();
        return {
          source: { width: source.naturalWidth, height: source.naturalHeight },
          result: { width: result.naturalWidth, height: result.naturalHeight },
          expected: { width: Number(result.dataset.expectedWidth), height: Number(result.dataset.expectedHeight) },
          outline: { left: (outline.left - box.left) / box.width, top: (outline.top - box.top) / box.height, width: outline.width / box.width, height: outline.height / box.height },
        };
      });
      expect(shown.source).toEqual({ width: task.width, height: task.height });
      expect(shown.result).toEqual(expandedSize({ width: task.width, height: task.height }, task.ratios));
      expect(shown.expected).toEqual(shown.result);
      const w = 1 + task.ratios.left + task.ratios.right;
      const h = 1 + task.ratios.up + task.ratios.down;
      expect(shown.outline.left).toBeCloseTo(task.ratios.left / w, 1);
      expect(shown.outline.top).toBeCloseTo(task.ratios.up / h, 1);
      expect(shown.outline.width).toBeCloseTo(1 / w, 1);
      expect(shown.outline.height).toBeCloseTo(1 / h, 1);
    }
    const failure = await page.waitForSelector(`#gallery .pair[data-task-id="${refused.id}"] .failure`);
    expect(await failure.textContent()).toMatch(/^failed \(/);

    await mkdir(path.dirname(screenshotPath), { recursive: true });
    await page.screenshot({ path: screenshotPath, fullPage: true });
    console.log(`dashboard screenshot: ${screenshotPath}`);
    expect(pageErrors).toEqual([]);
  });

  it("when a task's text is markup, then the page shows it as text and runs nothing", async () => {
    const hostile = `<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>`;
    const image = (await makeImage(300, 300)).toString("base64");
    const { data } = await client.POST("/v1/tasks", {
      body: { image, up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1, external_task_id: hostile },
    });
    const cell = `#task-rows tr[data-task-id="${data!.id}"] .external-id`;
    await page.waitForSelector(cell);
    expect(await page.textContent(cell)).toBe(hostile);
    expect(await page.$$eval(`${cell} *`, (nodes) => nodes.length)).toBe(0);
    expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined();
  });

  it("when a batch runs, then it is listed with its progress moving over its stream to completion, its counts and ETA, the provider's routes, and a gallery of each result at its real size beside its source, the failure with its reason", async () => {
    const ratios = { up_expansion_ratio: 0.2, down_expansion_ratio: 0.1, left_expansion_ratio: 0.3, right_expansion_ratio: 0.1 };
    const sizes = [
      { width: 450, height: 300 },
      { width: 300, height: 420 },
      { width: 600, height: 320 },
    ];
    const items: Record<string, unknown>[] = [];
    for (const size of sizes) items.push({ image: (await makeImage(size.width, size.height)).toString("base64") });
    // Nothing to read at this address: the provider refuses the item, which fails with its reason.
    items.push({ image: `${stack.simulator.url}/no-such-image.png` });
    const res = await fetch(`${stack.api.url}/v1/batches`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "<b>gallery</b> batch", defaults: ratios, items }),
    });
    const created = (await res.json()) as { id: string; total: number };
    expect(res.status, JSON.stringify(created)).toBe(201);
    expect(created.total, JSON.stringify(created)).toBe(4);

    // The batch's row, sampled until it has ended: percent, status and where the view came from.
    const row = `#batch-rows tr[data-batch-id="${created.id}"]`;
    const percents: number[] = [];
    const via = new Set<string>();
    let status = "";
    const deadline = Date.now() + 25_000;
    while (Date.now() < deadline) {
      const seen = await page
        .$eval(row, (node) => ({ percent: Number((node as HTMLElement).dataset.percent), status: (node as HTMLElement).dataset.status!, via: (node as HTMLElement).dataset.via! }))
        .catch(() => null);
      if (seen) {
        if (percents.at(-1) !== seen.percent) percents.push(seen.percent);
        via.add(seen.via);
        status = seen.status;
        if (["completed", "completed_with_errors", "canceled"].includes(status)) break;
      }
      await page.waitForTimeout(100);
    }
    expect(status).toBe("completed_with_errors");
    expect(percents.at(-1)).toBe(100);
    expect(percents[0], `percents seen: ${percents.join(",")}`).toBeLessThan(100);
    expect([...percents].sort((a, b) => a - b)).toEqual(percents);
    // Live over the batch's event stream (the SSE parser), not only the list's reads.
    expect([...via]).toContain("stream");
    expect(await page.textContent("#batch-live-mode")).toBe("(live: event stream)");
    expect(await page.textContent(`${row} .batch-name`)).toBe("<b>gallery</b> batch");
    expect(await page.$$eval(`${row} .batch-name *`, (nodes) => nodes.length)).toBe(0);
    expect(await page.textContent(`${row} .counts`)).toBe("succeeded 3 · failed 1");
    expect(await page.textContent(`${row} .percent`)).toBe("100% (4/4)");
    expect(await page.textContent(`${row} .eta`)).toBe("done");

    // The provider's one route (the simulator): its circuit and slots.
    const routes = await page.$$eval("#route-rows tr", (rows) => rows.map((r) => ({ state: (r as HTMLElement).dataset.state, slots: r.querySelector(".slots")!.textContent })));
    expect(routes.length).toBeGreaterThanOrEqual(1);
    expect(routes[0]!.state).toBe("closed");
    expect(routes[0]!.slots).toMatch(/^ ?\d+ \/ \d+ \(\d+ configured\)$/);

    // The gallery of the newest batch (this one), once it shows every task at its end.
    await page.click(`${row} .show-gallery`);
    const gallery = `#batch-gallery[data-batch-id="${created.id}"]`;
    await page.waitForFunction(
      (selector) => {
        const node = document.querySelector(selector);
        return !!node && node.querySelectorAll('.pair.status-succeeded img[alt="result 0"]').length === 3 && node.querySelectorAll(".pair.status-failed .failure").length === 1;
      },
      gallery,
      { timeout: 10_000 },
    );
    const pairs = await page.$$eval(`${gallery} .pair.status-succeeded`, async (nodes) =>
      Promise.all(
        nodes.map(async (node) => {
          const imgs = [...node.querySelectorAll("img")];
          await Promise.all(imgs.map((img) => (img.complete ? undefined : new Promise((r) => img.addEventListener("load", r, { once: true })))));
          const source = node.querySelector<HTMLImageElement>('img[alt="source"]')!;
          const result = node.querySelector<HTMLImageElement>('img[alt="result 0"]')!;
          return {
            source: { width: source.naturalWidth, height: source.naturalHeight },
            result: { width: result.naturalWidth, height: result.naturalHeight },
            expected: { width: Number(result.dataset.expectedWidth), height: Number(result.dataset.expectedHeight) },
            line: node.querySelector(".line")?.textContent ?? "",
          };
        }),
      ),
    );
    const bySize = (a: { width: number }, b: { width: number }) => a.width - b.width;
    expect(pairs.map((p) => p.source).sort(bySize)).toEqual([...sizes].sort(bySize));
    const ratioOf = { up: ratios.up_expansion_ratio, down: ratios.down_expansion_ratio, left: ratios.left_expansion_ratio, right: ratios.right_expansion_ratio };
    for (const pair of pairs) {
      expect(pair.result).toEqual(expandedSize(pair.source, ratioOf));
      expect(pair.expected).toEqual(pair.result);
      expect(pair.line).toMatch(/^line \d+$/);
    }
    const failure = await page.textContent(`${gallery} .pair.status-failed .failure`);
    expect(failure).toMatch(/^failed \(\w+\): \S/);
    expect(await page.textContent("#batch-gallery-summary")).toBe("4 task(s): 3 succeeded, 1 failed, 0 still running.");

    await mkdir(path.dirname(batchScreenshotPath), { recursive: true });
    await page.screenshot({ path: batchScreenshotPath, fullPage: true });
    console.log(`dashboard batch screenshot: ${batchScreenshotPath}`);
    expect(pageErrors).toEqual([]);
  });

  it("when the server has no batch stream, then the page polls GET /v1/batches/{id} and still follows the batch to its end", async () => {
    await page.route("**/v1/batches/*/stream", (route) => route.fulfill({ status: 404, contentType: "application/problem+json", body: "{}" }));
    try {
      const image = (await makeImage(320, 320)).toString("base64");
      const res = await fetch(`${stack.api.url}/v1/batches`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ name: "polled", defaults: { up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1 }, items: [{ image }] }),
      });
      const { id } = (await res.json()) as { id: string };
      expect(res.status).toBe(201);
      const row = `#batch-rows tr[data-batch-id="${id}"]`;
      const via = new Set<string>();
      const deadline = Date.now() + 15_000;
      let status = "";
      while (Date.now() < deadline && status !== "completed") {
        const seen = await page.$eval(row, (node) => ({ ...(node as HTMLElement).dataset })).catch(() => null);
        if (seen) {
          via.add(seen.via!);
          status = seen.status!;
        }
        await page.waitForTimeout(100);
      }
      expect(status).toBe("completed");
      expect([...via]).toContain("poll");
      expect([...via]).not.toContain("stream");
      expect(await page.textContent("#batch-live-mode")).toBe("(live: polling every second)");
    } finally {
      await page.unroute("**/v1/batches/*/stream");
    }
  });

  it("when a new batch starts, then the gallery follows it and says so; a picked batch stays until 'follow the running batch' is clicked", async () => {
    const startBatch = async (name: string) => {
      const image = (await makeImage(320, 320)).toString("base64");
      const res = await fetch(`${stack.api.url}/v1/batches`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ name, defaults: { up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1 }, items: [{ image }, { image }] }),
      });
      expect(res.status).toBe(201);
      return ((await res.json()) as { id: string }).id;
    };
    const galleryShows = (id: string) => page.waitForSelector(`#batch-gallery[data-batch-id="${id}"]`, { timeout: 15_000 });
    const mode = () => page.getAttribute("#batch-gallery-mode", "data-mode");

    // An earlier test picked a batch's gallery: it stays there while another runs.
    const picked = await page.getAttribute("#batch-gallery", "data-batch-id");
    expect(await mode()).toBe("picked");
    expect(await page.textContent("#batch-gallery-mode")).toMatch(/the batch you picked/);
    const second = await startBatch("second");
    await page.waitForSelector(`#batch-rows tr[data-batch-id="${second}"]`, { timeout: 15_000 });
    expect(await page.getAttribute("#batch-gallery", "data-batch-id")).toBe(picked);

    // Back to following: the running batch, said in words.
    await page.click("#batch-gallery-follow");
    await galleryShows(second);
    expect(await mode()).toBe("following");
    expect(await page.isHidden("#batch-gallery-follow")).toBe(true);

    // The next batch that starts takes the gallery with it.
    const third = await startBatch("third");
    await galleryShows(third);
    expect(await page.textContent("#batch-gallery-mode")).toMatch(/^Following the running batch/);
    expect(pageErrors).toEqual([]);
  });

  // Swagger UI's bundle is the heaviest page here: two loaded full runs (load average 20-30) timed
  // out at the 30 s default while it rendered. The bounds only stop a hang; nothing here is timed.
  it("when /docs is opened, then Swagger UI renders every operation of the document from local files", { timeout: 120_000 }, async () => {
    const docs = await browser.newPage();
    const errors: string[] = [];
    docs.on("pageerror", (error) => errors.push(error.message));
    await docs.goto(`${stack.api.url}/docs`, { timeout: 90_000 });
    await docs.waitForSelector(".opblock", { timeout: 90_000 });
    const operations = await docs.$$eval(".opblock", (nodes) => nodes.length);
    const doc = (await (await fetch(`${stack.api.url}/openapi.json`)).json()) as { paths: Record<string, object>; webhooks: Record<string, object> };
    // Each operation of every path, and each outbound callback (rendered as webhooks).
    const documented = [...Object.values(doc.paths), ...Object.values(doc.webhooks)].reduce<number>((n, item) => n + Object.keys(item).length, 0);
    expect(operations).toBe(documented);
    expect(errors).toEqual([]);
    await docs.close();
  });

  it("when a signed-in tab signs out, then the key is gone from sessionStorage and the page asks again", async () => {
    await page.click("#sign-out");
    expect(await page.evaluate(() => sessionStorage.getItem("kling.apiKey"))).toBeNull();
    expect(await page.isVisible("#sign-in")).toBe(true);
  });
});
