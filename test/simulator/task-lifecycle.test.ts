import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expandedSize } from "../../apps/domain/expand-request/expand-limits.ts";
import { expansionLayout } from "../../apps/simulator/expanded-image.render.ts";
import type { RunningSimulator } from "../../apps/simulator/simulator.server.ts";
import { signStandardWebhook } from "../../apps/domain/webhooks/standard-webhooks.ts";
import {
  adminApi,
  isTerminalIn,
  makeTestImage,
  providerApi,
  randomToken,
  startCallbackReceiver,
  startTestSimulator,
  statusesOf,
  validBody,
} from "./sim-test-kit.ts";
import { startFileServer } from "../support/file-server.ts";

let sim: RunningSimulator;
let receiver: Awaited<ReturnType<typeof startCallbackReceiver>>;
let files: Awaited<ReturnType<typeof startFileServer>>;
let png: Buffer;

beforeAll(async () => {
  sim = await startTestSimulator({ SIM_RUN_MS: "80-120" });
  receiver = await startCallbackReceiver();
  png = await makeTestImage(400, 300);
  files = await startFileServer({
    "/cat.png": { body: png, contentType: "image/png" },
    "/cat.jpg": { body: await makeTestImage(320, 480, "jpeg"), contentType: "image/jpeg" },
  });
});
afterAll(async () => {
  await sim.stop();
  await receiver.stop();
  await files.stop();
});

describe("task lifecycle, callbacks and results", () => {
  it("when a task runs, then it goes submitted -> processing -> succeed with a callback for each and exact-size results", async () => {
    const api = providerApi(sim, randomToken());
    const body = validBody(files.url("/cat.png"), { n: 2, callback_url: receiver.url });
    const created = await api.create(body);
    expect(created.status).toBe(200);
    const taskId: string = created.body.data.task_id;

    const received = await receiver.waitFor((items) => isTerminalIn(items, taskId));
    expect(statusesOf(received, taskId)).toEqual(["submitted", "processing", "succeed"]);
    const callbacks = receiver.forTask(taskId);
    for (const cb of callbacks) expect(cb.headers["content-type"]).toBe("application/json");
    const stamps = callbacks.map((cb) => cb.body.updated_at as number);
    expect(stamps).toEqual([...stamps].sort((a, b) => a - b));
    expect(new Set(stamps).size).toBe(3);

    // The callback body is the bare task object: exactly what the get answers in `data`.
    const got = await api.get(taskId);
    const final = callbacks.at(-1)?.body;
    expect(final).toEqual(got.body.data);
    expect(final).not.toHaveProperty("code");
    expect(final).toMatchObject({ task_status: "succeed", task_status_msg: "", final_unit_deduction: "2" });
    expect(final.task_result.images).toHaveLength(2);

    const expected = expandedSize({ width: 400, height: 300 }, { up: 0.25, down: 0.25, left: 0.5, right: 0 });
    for (const [index, image] of (final.task_result.images as { index: number; url: string }[]).entries()) {
      expect(image.index).toBe(index);
      const download = await fetch(image.url);
      expect(download.status).toBe(200);
      expect(download.headers.get("content-type")).toBe("image/png");
      const meta = await sharp(Buffer.from(await download.arrayBuffer())).metadata();
      expect([meta.format, meta.width, meta.height]).toEqual(["png", expected.width, expected.height]);
    }
  });

  it("when a result is rendered, then the original sits unchanged at (w*left, h*up) inside the expanded canvas", async () => {
    const api = providerApi(sim, randomToken());
    const ratios = { up: 0.5, down: 0.2, left: 0.3, right: 0.4 };
    const created = await api.create({
      image: png.toString("base64"),
      up_expansion_ratio: ratios.up,
      bottom_expansion_ratio: ratios.down,
      left_expansion_ratio: ratios.left,
      right_expansion_ratio: ratios.right,
      callback_url: receiver.url,
    });
    const taskId: string = created.body.data.task_id;
    const received = await receiver.waitFor((items) => isTerminalIn(items, taskId));
    const url = received.filter((r) => r.body.task_id === taskId).at(-1)?.body.task_result.images[0].url as string;
    const result = await sharp(Buffer.from(await (await fetch(url)).arrayBuffer())).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const layout = expansionLayout({ width: 400, height: 300 }, ratios);
    expect([result.info.width, result.info.height]).toEqual([layout.width, layout.height]);
    expect([layout.left, layout.top]).toEqual([120, 150]);
    const original = await sharp(png).raw().toBuffer();
    for (const [x, y] of [[0, 0], [399, 299], [200, 150], [17, 283]] as const) {
      const src = original.subarray((y * 400 + x) * 3, (y * 400 + x) * 3 + 3);
      const at = ((y + layout.top) * layout.width + (x + layout.left)) * 3;
      expect([...result.data.subarray(at, at + 3)]).toEqual([...src]);
    }
  });

  it("when a JPEG URL image is portrait, then the result keeps its orientation and exact size", async () => {
    const api = providerApi(sim, randomToken(), "/kling");
    const created = await api.create(validBody(files.url("/cat.jpg"), { callback_url: receiver.url }));
    const taskId: string = created.body.data.task_id;
    const received = await receiver.waitFor((items) => isTerminalIn(items, taskId));
    const url = received.filter((r) => r.body.task_id === taskId).at(-1)?.body.task_result.images[0].url as string;
    const meta = await sharp(Buffer.from(await (await fetch(url)).arrayBuffer())).metadata();
    const expected = expandedSize({ width: 320, height: 480 }, { up: 0.25, down: 0.25, left: 0.5, right: 0 });
    expect([meta.width, meta.height]).toEqual([expected.width, expected.height]);
  });

  it("when a webhook secret is configured, then each callback carries a valid Standard Webhooks signature", async () => {
    const secret = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI=";
    const signed = await startTestSimulator({ SIM_WEBHOOK_SECRET: secret });
    try {
      const api = providerApi(signed, randomToken());
      const created = await api.create(validBody(png.toString("base64"), { callback_url: receiver.url }));
      const taskId: string = created.body.data.task_id;
      await receiver.waitFor((items) => isTerminalIn(items, taskId));
      for (const cb of receiver.forTask(taskId)) {
        const id = String(cb.headers["webhook-id"]);
        const timestamp = Number(cb.headers["webhook-timestamp"]);
        expect(Math.abs(timestamp - Date.now() / 1000)).toBeLessThan(60);
        expect(cb.headers["webhook-signature"]).toBe(signStandardWebhook(secret, id, timestamp, cb.rawBody));
      }
      expect(new Set(receiver.forTask(taskId).map((cb) => cb.headers["webhook-id"])).size).toBe(3);
    } finally {
      await signed.stop();
    }
  });

  it("when no webhook secret is configured, then callbacks carry no signature headers", async () => {
    const api = providerApi(sim, randomToken());
    const created = await api.create(validBody(png.toString("base64"), { callback_url: receiver.url }));
    const taskId: string = created.body.data.task_id;
    await receiver.waitFor((items) => isTerminalIn(items, taskId));
    for (const cb of receiver.forTask(taskId)) expect(cb.headers).not.toHaveProperty("webhook-signature");
  });

  it("when every task is set to fail, then tasks end failed with a reason, no result and a failed callback", async () => {
    const failing = await startTestSimulator({ SIM_FAIL_RATE: "1", SIM_CONTENT_POLICY_SHARE: "1" });
    try {
      const api = providerApi(failing, randomToken());
      const created = await api.create(validBody(png.toString("base64"), { callback_url: receiver.url, n: 3 }));
      const taskId: string = created.body.data.task_id;
      await receiver.waitFor((items) => isTerminalIn(items, taskId));
      expect(statusesOf(receiver.received, taskId)).toEqual(["submitted", "processing", "failed"]);
      const got = await api.get(taskId);
      expect(got.status).toBe(200);
      expect(got.body.data).toMatchObject({ task_status: "failed", task_status_msg: expect.stringMatching(/^content policy/) });
      expect(got.body.data).not.toHaveProperty("task_result");
      expect((await adminApi(failing).stats()).body).toMatchObject({ tasks_failed: 1, slots_in_use: 0 });
    } finally {
      await failing.stop();
    }
  });
});
