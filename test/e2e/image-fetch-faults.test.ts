import { createServer, type Server } from "node:http";
import net, { type AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFileServer } from "../support/file-server.ts";
import { call, waitForTask } from "../support/http.ts";
import { makeImage } from "../support/images.ts";
import { startStack, type Stack } from "../support/stack.ts";

// Hostile image hosts, through the public API and a real worker: a malformed answer fails its own
// task with a reason a caller can read, and never takes the worker (or anyone else's task) down.

let stack: Stack;
let files: Awaited<ReturnType<typeof startFileServer>>;
let hostile: Server;
let garbage: net.Server;
let hostileUrl: (path: string) => string;
let garbageUrl: string;
let flakyRequests = 0;
let photo: Buffer;

const listen = async (server: net.Server) => {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as AddressInfo).port;
};

beforeAll(async () => {
  photo = await makeImage(400, 300);
  stack = await startStack();
  files = await startFileServer({ "/photo.png": { body: photo } });
  hostile = createServer((req, res) => {
    // The probe's answer: `new URL("http://[::1")` throws, once inside node:http's callback.
    if (req.url === "/moved.png") return res.writeHead(302, { location: "http://[::1" }).end();
    // Two "not now"s, then the image: the task must wait and try again, not fail.
    if (req.url === "/flaky.png" && ++flakyRequests <= 2) return res.writeHead(503, { "retry-after": "0" }).end();
    res.writeHead(200, { "content-type": "image/png" }).end(photo);
  });
  garbage = net.createServer((socket) => {
    socket.on("error", () => {});
    socket.once("data", () => socket.end("\x00\x01 not HTTP\r\n\r\n"));
  });
  const hostilePort = await listen(hostile);
  hostileUrl = (path) => `http://127.0.0.1:${hostilePort}${path}`;
  garbageUrl = `http://127.0.0.1:${await listen(garbage)}/photo.png`;
});
afterAll(async () => {
  hostile?.closeAllConnections();
  await new Promise((resolve) => hostile?.close(resolve));
  await new Promise((resolve) => garbage?.close(resolve));
  await files?.stop();
  await stack?.stop();
});

const body = (image: string) => ({
  image,
  up_expansion_ratio: 0.1,
  down_expansion_ratio: 0.1,
  left_expansion_ratio: 0.1,
  right_expansion_ratio: 0.1,
});

const submit = async (key: string, image: string): Promise<string> => {
  const answer = await call(stack.api.url, "POST", "/v1/tasks", { key, body: body(image) });
  expect(answer.status, JSON.stringify(answer.body)).toBe(202);
  return answer.body.id;
};

describe("image hosts that answer badly", () => {
  it("when one task's image URL answers a malformed redirect beside another task, then it fails with a clear reason, the other succeeds and the worker goes on", async () => {
    const { key } = await stack.newAccount();
    const [badId, goodId] = await Promise.all([submit(key, hostileUrl("/moved.png")), submit(key, files.url("/photo.png"))]);
    const [bad, good] = await Promise.all([
      waitForTask(stack.api.url, key, badId, ["failed", "succeeded"]),
      waitForTask(stack.api.url, key, goodId, ["failed", "succeeded"]),
    ]);
    expect(bad.status).toBe("failed");
    expect(bad.failure).toMatchObject({ class: "invalid_image", message: "image: the server redirected to an invalid URL" });
    expect(bad.provider.task_id).toBeNull();
    expect(good.status, JSON.stringify(good.failure)).toBe("succeeded");
    // The same worker takes the next task, bad answer and all.
    const afterId = await submit(key, files.url("/photo.png"));
    expect((await waitForTask(stack.api.url, key, afterId, ["failed", "succeeded"])).status).toBe("succeeded");
  });

  it("when an image host answers garbage instead of HTTP, then the task fails at once as malformed, without retries", async () => {
    const { key } = await stack.newAccount();
    const done = await waitForTask(stack.api.url, key, await submit(key, garbageUrl), ["failed", "succeeded"]);
    expect(done.failure).toMatchObject({ class: "invalid_image", message: "image: the server's answer was malformed" });
  });

  it("when an image host answers 503 twice and then the image, then the task waits, tries again and succeeds", async () => {
    const { key } = await stack.newAccount();
    const done = await waitForTask(stack.api.url, key, await submit(key, hostileUrl("/flaky.png")), ["failed", "succeeded"]);
    expect(done.status, JSON.stringify(done.failure)).toBe("succeeded");
    // Three from the worker (the simulator, as the provider, fetches the URL once more itself).
    expect(flakyRequests).toBeGreaterThanOrEqual(3);
  });
});
