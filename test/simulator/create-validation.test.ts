import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningSimulator } from "../../apps/simulator/simulator.server.ts";
import { adminApi, makeTestImage, providerApi, randomToken, startTestSimulator, validBody } from "./sim-test-kit.ts";
import { startFileServer } from "../support/file-server.ts";

let sim: RunningSimulator;
let files: Awaited<ReturnType<typeof startFileServer>>;
let image: string;

beforeAll(async () => {
  sim = await startTestSimulator();
  image = (await makeTestImage()).toString("base64");
  files = await startFileServer({ "/page.html": { body: "<html>not an image</html>", contentType: "text/html" } });
});
afterAll(async () => {
  await sim.stop();
  await files.stop();
});

const expectInvalid = async (body: unknown, messagePart: RegExp, target = sim) => {
  const answer = await providerApi(target, randomToken()).create(body);
  expect(answer.status).toBe(400);
  expect(answer.body).toMatchObject({ code: 1201, request_id: expect.any(String) });
  expect(answer.body.message).toMatch(messagePart);
  return answer.body.message as string;
};

describe("create validation", () => {
  it("when the image has a data: prefix, then the create answers 400/1201 naming the image", async () => {
    await expectInvalid(validBody(`data:image/png;base64,${image}`), /^image: .*data: prefix/);
  });

  it("when a ratio is out of 0..2 or not a number, then the create answers 400/1201 naming the field", async () => {
    await expectInvalid(validBody(image, { up_expansion_ratio: 2.5 }), /up_expansion_ratio: must be between 0 and 2/);
    await expectInvalid(validBody(image, { left_expansion_ratio: -0.1 }), /left_expansion_ratio: /);
    await expectInvalid(validBody(image, { right_expansion_ratio: "1" }), /right_expansion_ratio: /);
  });

  it("when the expanded area would exceed 3x, then the create answers 400/1201", async () => {
    const body = validBody(image, { up_expansion_ratio: 1, down_expansion_ratio: 1, left_expansion_ratio: 0.1, right_expansion_ratio: 0 });
    await expectInvalid(body, /at most 3x/);
  });

  it("when the image is too small or too narrow, then the create answers 400/1201 with its size", async () => {
    await expectInvalid(validBody((await makeTestImage(299, 400)).toString("base64")), /image: image is 299x400 px/);
    await expectInvalid(validBody((await makeTestImage(1000, 300)).toString("base64")), /image: .*aspect ratio/);
  });

  it("when the image is not a JPG/PNG or not Base64, then the create answers 400/1201", async () => {
    await expectInvalid(validBody(Buffer.from("GIF89a-not-really").toString("base64")), /image: image must be a JPG\/JPEG or PNG/);
    await expectInvalid(validBody("not base64!"), /image: /);
  });

  it("when the image URL is unreachable or not an image, then the create answers 400/1201", async () => {
    await expectInvalid(validBody(files.url("/missing.png")), /image: could not be downloaded: HTTP 404/);
    await expectInvalid(validBody(files.url("/page.html")), /image: image must be a JPG\/JPEG or PNG/);
    await expectInvalid(validBody("http://127.0.0.1:1/nothing.png"), /image: could not be downloaded/);
  });

  it("when n is outside 1..9, then the create answers 400/1201; a numeric string is accepted", async () => {
    await expectInvalid(validBody(image, { n: 0 }), /n: /);
    await expectInvalid(validBody(image, { n: 10 }), /n: /);
    await expectInvalid(validBody(image, { n: 1.5 }), /n: /);
    const ok = await providerApi(sim, randomToken()).create(validBody(image, { n: "2" }));
    expect(ok.status).toBe(200);
  });

  it("when required fields are missing, then every violation is listed in one message", async () => {
    const message = await expectInvalid({ image }, /up_expansion_ratio: .*; left_expansion_ratio: .*; right_expansion_ratio: /);
    expect(message.split("; ").length).toBeGreaterThanOrEqual(3);
  });

  it("when the simulator accepts only down_expansion_ratio and gets bottom_expansion_ratio, then the downward ratio is missing (400/1201)", async () => {
    const strict = await startTestSimulator({ SIM_DOWN_FIELD: "down" });
    try {
      const { down_expansion_ratio: down, ...rest } = validBody(image);
      await expectInvalid({ ...rest, bottom_expansion_ratio: down }, /^down_expansion_ratio: is required$/, strict);
      expect((await providerApi(strict, randomToken()).create(validBody(image))).status).toBe(200);
      await adminApi(strict).patch({ down_field: "bottom" });
      await expectInvalid(validBody(image), /^bottom_expansion_ratio: is required$/, strict);
      expect((await providerApi(strict, randomToken()).create({ ...rest, bottom_expansion_ratio: down })).status).toBe(200);
    } finally {
      await strict.stop();
    }
  });

  it("when a create is refused for validation, then no task is created and no slot is held", async () => {
    const token = randomToken();
    await providerApi(sim, token).create(validBody(image, { n: 42 }));
    expect((await adminApi(sim).tasks(token)).body).toEqual([]);
    expect((await adminApi(sim).stats(token)).body.slots_in_use).toBe(0);
  });
});
