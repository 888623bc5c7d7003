import { crc32 } from "node:zlib";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFileServer } from "../support/file-server.ts";
import { call, waitForTask, type ApiAnswer } from "../support/http.ts";
import { makeImage, paddedPng } from "../support/images.ts";
import { startStack, type Stack } from "../support/stack.ts";
import { countTasksOf } from "../support/rows.ts";

// KLING.md "Create: request body", the `image` rule: inline Base64 is checked at intake (400, nothing
// written); URL images are fetched and checked by the worker, and a bad one fails the task before it
// ever reaches the provider.

const MB10 = 10 * 1024 * 1024;
const DROPIN = "/kling/v1/images/editing/expand";

let stack: Stack;
let files: Awaited<ReturnType<typeof startFileServer>>;
let b64: (bytes: Buffer) => string;
let png: (w: number, h: number) => Promise<string>;
let exactly10MB: Buffer;
let over10MB: Buffer;


beforeAll(async () => {
  b64 = (bytes) => bytes.toString("base64");
  png = async (w, h) => b64(await makeImage(w, h));
  [exactly10MB, over10MB] = await Promise.all([paddedPng(MB10), paddedPng(MB10 + 1)]);
  stack = await startStack();
  files = await startFileServer({
    "/photo.png": { body: await makeImage(400, 300) },
    "/small.png": { body: await makeImage(299, 300) },
    "/wide.png": { body: await makeImage(751, 300) },
    "/notes.txt": { body: Buffer.from("just some notes, not an image\n"), contentType: "text/plain" },
    "/huge.png": { body: over10MB },
  });
});
afterAll(async () => {
  await files?.stop();
  await stack?.stop();
});

const withImage = (image: unknown) => ({
  ...(image === undefined ? {} : { image }),
  up_expansion_ratio: 0.1,
  down_expansion_ratio: 0.1,
  left_expansion_ratio: 0.1,
  right_expansion_ratio: 0.1,
});

type Sent = { answer: ApiAnswer; accountId: string; key: string };

// Every submission gets its own account, so "nothing was written" is checkable per case.
const submit = async (image: unknown, path = "/v1/tasks"): Promise<Sent> => {
  const { accountId, key } = await stack.newAccount();
  const answer = await call(stack.api.url, "POST", path, { key, body: withImage(image) });
  return { answer, accountId, key };
};

const expectNothingWritten = async (accountId: string) => {
  expect(await countTasksOf(stack.db, accountId)).toBe(0);
};

const expectAccepted = ({ answer }: Sent) => {
  expect(answer.status, JSON.stringify(answer.body).slice(0, 500)).toBe(202);
  expect(answer.body).toMatchObject({ status: "queued" });
};

const expectImageRejected = async ({ answer, accountId }: Sent, reason: RegExp) => {
  expect(answer.status, JSON.stringify(answer.body).slice(0, 500)).toBe(400);
  expect(answer.body).toMatchObject({ type: expect.stringMatching(/validation-failed$/), status: 400 });
  expect(answer.body.errors).toEqual([{ field: "image", message: expect.stringMatching(reason) }]);
  expect(answer.body.detail).toMatch(/^image: /);
  await expectNothingWritten(accountId);
};

describe("inline image: the reference itself", () => {
  it.each([
    { what: "missing", image: undefined, reason: /required/ },
    { what: "an empty string", image: "", reason: /required/ },
    { what: "not a string", image: 42, reason: /URL or raw Base64/ },
    { what: "data:-prefixed Base64", image: "data:image/png;base64,iVBORw0KGgo=", reason: /without a data: prefix/ },
    { what: "neither Base64 nor a URL", image: "hello world!", reason: /http\(s\) URL or raw Base64/ },
    { what: "Base64 of a wrong length", image: "abc", reason: /http\(s\) URL or raw Base64/ },
    { what: "a URL without a scheme", image: "example.com/photo.png", reason: /http\(s\) URL or raw Base64/ },
    { what: "an ftp:// URL", image: "ftp://example.com/photo.png", reason: /must use http or https/ },
  ])("when the image is $what, then it is rejected with the reason", async ({ image, reason }) => {
    await expectImageRejected(await submit(image), reason);
  });

  it("when the data: prefix comes with a valid PNG, then it is still rejected (the provider wants raw Base64)", async () => {
    await expectImageRejected(await submit(`data:image/png;base64,${await png(400, 300)}`), /data: prefix/);
  });

  it("when the Base64 is wrapped over lines (MIME style), then it is accepted", async () => {
    const wrapped = (await png(400, 300)).replace(/.{76}/g, "$&\r\n");
    expectAccepted(await submit(wrapped));
  });
});

describe("inline image: size in pixels and aspect ratio", () => {
  it.each([
    [300, 300],
    [750, 300],
    [300, 750],
  ])("when the image is %ix%i, then it is accepted and its size recorded", async (w, h) => {
    const sent = await submit(await png(w, h));
    expectAccepted(sent);
    expect(sent.answer.body.request.source).toEqual({ width: w, height: h });
  });

  it.each([
    [299, 300],
    [300, 299],
  ])("when the image is %ix%i, then it is rejected as under 300 px", async (w, h) => {
    await expectImageRejected(await submit(await png(w, h)), new RegExp(`${w}x${h} px; each side must be at least 300 px`));
  });

  it.each([
    [751, 300],
    [300, 751],
  ])("when the image is %ix%i, then it is rejected as outside 1:2.5 .. 2.5:1", async (w, h) => {
    await expectImageRejected(await submit(await png(w, h)), new RegExp(`aspect ratio ${w}:${h} is outside 1:2.5 .. 2.5:1`));
  });
});

describe("inline image: format", () => {
  it("when the image is a JPEG, then it is accepted", async () => {
    expectAccepted(await submit(b64(await makeImage(400, 300, "jpeg"))));
  });

  it.each([
    { what: "text", bytes: async () => Buffer.from("this is plainly not a picture, just text") },
    { what: "a GIF", bytes: () => sharp(Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="400" height="300"/>`)).gif().toBuffer() },
    { what: "a WEBP", bytes: async () => sharp(await makeImage(400, 300)).webp().toBuffer() },
  ])("when the Base64 decodes to $what, then it is rejected as not JPG/PNG", async ({ bytes }) => {
    await expectImageRejected(await submit(b64(await bytes())), /must be a JPG\/JPEG or PNG file/);
  });

  it("when the bytes start like a PNG but are not one, then it is rejected as undecodable", async () => {
    const fake = Buffer.concat([(await makeImage(400, 300)).subarray(0, 8), Buffer.alloc(64, 7)]);
    await expectImageRejected(await submit(b64(fake)), /could not be decoded as PNG/);
  });
});

// A file whose header lies: a valid PNG with its IHDR rewritten to claim another size (CRC fixed,
// so the header reads clean) and its pixel data no longer matching.
const pngDeclaring = async (width: number, height: number): Promise<Buffer> => {
  const bytes = Buffer.from(await makeImage(400, 300));
  bytes.writeUInt32BE(width, 16);
  bytes.writeUInt32BE(height, 20);
  bytes.writeUInt32BE(crc32(bytes.subarray(12, 29)), 29);
  return bytes;
};

describe("inline image: decoded in full before it is accepted", () => {
  it("when a small PNG declares 16000x16000, then it is refused above the pixel limit, before it costs a provider task", async () => {
    const liar = await pngDeclaring(16_000, 16_000);
    expect(liar.length).toBeLessThan(50_000);
    await expectImageRejected(await submit(b64(liar)), /16000x16000 px; the limit is 40 megapixels/);
  });

  it("when a PNG declares a plausible size its data does not fill, then it is refused as truncated or corrupt", async () => {
    await expectImageRejected(await submit(b64(await pngDeclaring(2_000, 1_500))), /truncated or corrupt/);
  });

  it.each(["png", "jpeg"] as const)("when a %s is cut off half-way (a good header, half the data), then it is refused as truncated", async (format) => {
    const whole = await sharp({ create: { width: 800, height: 600, channels: 3, background: "#000", noise: { type: "gaussian", mean: 128, sigma: 40 } } })
      .toFormat(format)
      .toBuffer();
    await expectImageRejected(await submit(b64(whole.subarray(0, Math.floor(whole.length / 2)))), /truncated or corrupt/);
  });
});

describe("inline image: 10 MB", () => {
  it("when the image is exactly 10 MB (10485760 bytes), then it is accepted", async () => {
    expect(exactly10MB.length).toBe(MB10);
    expectAccepted(await submit(b64(exactly10MB)));
  });

  it("when the same image is one byte over 10 MB, then it is rejected naming the size and the limit", async () => {
    expect(over10MB.length).toBe(MB10 + 1);
    await expectImageRejected(await submit(b64(over10MB)), /image is 10485761 bytes; the limit is 10485760 bytes \(10 MB\)/);
  });

  it("when the body itself is over the 16 MB body limit, then the native route answers a clear 413", async () => {
    const sent = await submit("A".repeat(17 * 1024 * 1024));
    expect(sent.answer.status).toBe(413);
    expect(sent.answer.body).toMatchObject({
      type: expect.stringMatching(/payload-too-large$/),
      status: 413,
      detail: expect.stringMatching(/request body exceeds \d+ bytes/),
    });
    await expectNothingWritten(sent.accountId);
  });

  it("when the body is over the body limit on the drop-in route, then it answers 400/1201 with the reason", async () => {
    const sent = await submit("A".repeat(17 * 1024 * 1024), DROPIN);
    expect(sent.answer.status).toBe(400);
    expect(sent.answer.body).toMatchObject({ code: 1201, message: expect.stringMatching(/request body exceeds \d+ bytes/) });
    await expectNothingWritten(sent.accountId);
  });

  it("when an over-10 MB image comes through the drop-in route, then it answers 400/1201 naming the image", async () => {
    const sent = await submit(b64(over10MB), DROPIN);
    expect(sent.answer.status).toBe(400);
    expect(sent.answer.body).toMatchObject({ code: 1201, message: expect.stringMatching(/^image: image is 10485761 bytes/) });
    await expectNothingWritten(sent.accountId);
  });
});

describe("URL images, checked by the worker before submission", () => {
  const simulatorSaw = async (taskId: string) => {
    const tasks = await call(stack.simulator.url, "GET", "/_sim/tasks");
    expect(Array.isArray(tasks.body)).toBe(true);
    return (tasks.body as { external_task_id: string | null }[]).filter((t) => t.external_task_id === taskId).length;
  };

  const runUrlTask = async (url: string) => {
    const sent = await submit(url);
    expectAccepted(sent);
    expect(sent.answer.body.request.image).toEqual({ kind: "url", url });
    return waitForTask(stack.api.url, sent.key, sent.answer.body.id, ["failed", "succeeded"]);
  };

  const localhostUrl = (path: string) => files.url(path).replace("//127.0.0.1:", "//localhost:");

  it.each([
    { what: "a 299x300 PNG", url: () => files.url("/small.png"), reason: /^image: image is 299x300 px; each side must be at least 300 px$/ },
    { what: "a 751x300 PNG", url: () => files.url("/wide.png"), reason: /^image: image aspect ratio 751:300 is outside/ },
    { what: "a text file", url: () => files.url("/notes.txt"), reason: /^image: image must be a JPG\/JPEG or PNG file$/ },
    { what: "an image over 10 MB", url: () => files.url("/huge.png"), reason: /^image: larger than the 10 MB limit$/ },
    { what: "a URL that answers 404", url: () => files.url("/missing.png"), reason: /^image: HTTP 404/ },
    { what: "a valid image on localhost (a private host not allowed)", url: () => localhostUrl("/photo.png"), reason: /^image: the host name does not resolve to a public address$/ },
  ])("when the URL serves $what, then the task fails as invalid_image with the reason and never reaches the provider", async ({ url, reason }) => {
    const done = await runUrlTask(url());
    expect(done.status).toBe("failed");
    expect(done.failure).toMatchObject({ class: "invalid_image", message: expect.stringMatching(reason) });
    expect(done.provider.task_id).toBeNull();
    expect(await simulatorSaw(done.id)).toBe(0);
  });

  it("when the same valid image is served from the allowed host 127.0.0.1, then the task succeeds through the provider once", async () => {
    const done = await runUrlTask(files.url("/photo.png"));
    expect(done.status, JSON.stringify(done.failure)).toBe("succeeded");
    expect(done.request.source).toEqual({ width: 400, height: 300 });
    expect(await simulatorSaw(done.id)).toBe(1);
  });
});
