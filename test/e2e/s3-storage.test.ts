import { createHash, randomUUID } from "node:crypto";
import { readdir } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createS3Storage } from "../../apps/domain/storage/s3-storage.ts";
import { taskImageKey } from "../../apps/domain/storage/local-storage.ts";
import { startFileServer } from "../support/file-server.ts";
import { call, waitForTask } from "../support/http.ts";
import { imageSize, makeImage } from "../support/images.ts";
import { s3rverCredentials, startS3Server } from "../support/s3-server.ts";
import { startStack, type Stack } from "../support/stack.ts";

const bucket = "kling-e2e";
let s3: Awaited<ReturnType<typeof startS3Server>>;
let stack: Stack;
let files: Awaited<ReturnType<typeof startFileServer>>;
let bucketView: ReturnType<typeof createS3Storage>;

const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

beforeAll(async () => {
  s3 = await startS3Server([bucket]);
  // The API and the worker both use the bucket (under a prefix); the local directory stays unused.
  const s3Env = s3.env(bucket, { S3_PREFIX: "e2e/" });
  stack = await startStack({ apiEnv: s3Env, workerEnv: s3Env });
  files = await startFileServer({ "/photo.jpg": { body: await makeImage(500, 400, "jpeg"), contentType: "image/jpeg" } });
  // A second, independent view of the same bucket, as an operator's tool would have.
  bucketView = createS3Storage({
    bucket,
    prefix: "e2e/",
    region: "us-east-1",
    endpoint: s3.endpoint,
    forcePathStyle: true,
    credentials: s3rverCredentials,
    timeoutMs: 5_000,
  });
});
afterAll(async () => {
  bucketView?.close();
  await files?.stop();
  await stack?.stop();
  await s3?.stop();
});

describe("S3-compatible storage, end to end", () => {
  it("when a task with an inline image completes on S3 storage, then its source and results are in the bucket and served back byte for byte", async () => {
    const { key } = await stack.newAccount();
    const created = await call(stack.api.url, "POST", "/kling/v1/images/editing/expand", {
      key,
      body: {
        image: (await makeImage(400, 300)).toString("base64"),
        up_expansion_ratio: 0.1,
        down_expansion_ratio: 0.1,
        left_expansion_ratio: 0.25,
        right_expansion_ratio: 0.25,
        n: 2,
        external_task_id: `s3-${randomUUID()}`,
      },
    });
    expect(created.status).toBe(200);
    const taskId: string = created.body.data.task_id;

    // Intake kept the inline source in the bucket, not in a row and not on local disk.
    const source = await bucketView.read(`sources/${taskId}.png`);
    expect(source && (await imageSize(source))).toMatchObject({ width: 400, height: 300 });

    const done = await waitForTask(stack.api.url, key, taskId, ["succeeded", "failed"]);
    expect(done.status).toBe("succeeded");
    expect(done.images).toHaveLength(2);

    const dropIn = await call(stack.api.url, "GET", `/kling/v1/images/editing/expand/${taskId}`, { key });
    for (const image of done.images) {
      const inBucket = await bucketView.read(taskImageKey(taskId, image.index, "png"));
      expect(inBucket && sha256(inBucket)).toBe(image.sha256);

      const native = await fetch(new URL(`/v1/tasks/${taskId}/images/${image.index}`, stack.api.url), { headers: { authorization: `Bearer ${key}` } });
      expect(native.status).toBe(200);
      expect(native.headers.get("content-type")).toBe("image/png");
      const nativeBytes = Buffer.from(await native.arrayBuffer());
      expect(Number(native.headers.get("content-length"))).toBe(nativeBytes.length);
      expect(sha256(nativeBytes)).toBe(image.sha256);
      expect(await imageSize(nativeBytes)).toMatchObject({ width: 600, height: 360 });

      const signed = await fetch(dropIn.body.data.task_result.images[image.index].url);
      expect(signed.status).toBe(200);
      expect(sha256(Buffer.from(await signed.arrayBuffer()))).toBe(image.sha256);
    }
    expect(await readdir(stack.env.storageDir)).toEqual([]);
  });

  it("when a task with an image URL completes on S3 storage, then its result is served from the bucket", async () => {
    const { key } = await stack.newAccount();
    const created = await call(stack.api.url, "POST", "/v1/tasks", {
      key,
      body: { image: files.url("/photo.jpg"), up_expansion_ratio: 0.5, down_expansion_ratio: 0.5, left_expansion_ratio: 0, right_expansion_ratio: 0 },
    });
    expect(created.status).toBe(202);
    const done = await waitForTask(stack.api.url, key, created.body.id, ["succeeded", "failed"]);
    expect(done.status).toBe("succeeded");
    const served = await fetch(new URL(`/v1/tasks/${done.id}/images/0`, stack.api.url), { headers: { authorization: `Bearer ${key}` } });
    expect(served.status).toBe(200);
    expect(sha256(Buffer.from(await served.arrayBuffer()))).toBe(done.images[0].sha256);
  });

  it("when a stored image was deleted from the bucket behind our back, then its route answers 404, not a server error", async () => {
    const { key } = await stack.newAccount();
    const created = await call(stack.api.url, "POST", "/v1/tasks", {
      key,
      body: { image: (await makeImage(320, 320)).toString("base64"), up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1 },
    });
    const done = await waitForTask(stack.api.url, key, created.body.id, ["succeeded", "failed"]);
    expect(done.status).toBe("succeeded");
    await bucketView.remove(taskImageKey(done.id, 0, "png"));
    const served = await call(stack.api.url, "GET", `/v1/tasks/${done.id}/images/0`, { key });
    expect(served.status).toBe(404);
  });
});
