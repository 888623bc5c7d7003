import { randomUUID } from "node:crypto";
import { truncate } from "node:fs/promises";
import { connect } from "node:net";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ratios, testImage } from "../support/fault-kit.ts";
import { call, waitForTask } from "../support/http.ts";
import { startStack, testServerKey, type Stack } from "../support/stack.ts";
import { jsonLines, spawnApp, within, type Captured } from "../process/process-kit.ts";

// The API's request log as an operator reads it: the real API process (apps/api/main.ts) with
// debug logs in JSON, beside a test stack whose simulator and worker do the work.
describe("the API's request log", () => {
  let stack: Stack;
  let api: Captured;
  let apiUrl: string;

  beforeAll(async () => {
    stack = await startStack();
    api = spawnApp("apps/api/main.ts", {
      DATABASE_URL: stack.env.databaseUrl,
      REDIS_URL: stack.env.redisUrl,
      QUEUE_PREFIX: stack.env.queuePrefix,
      STORAGE_DIR: stack.env.storageDir,
      SERVER_KEY: testServerKey,
      PORT: "0",
      LOG_LEVEL: "debug",
      LOG_FORMAT: "json",
    });
    [, apiUrl] = (await api.waitFor(/"url":"(http:\/\/127\.0\.0\.1:\d+)"[^\n]*"msg":"api listening"/, 60_000)) as unknown as [string, string];
  });
  afterAll(async () => {
    api?.child.kill("SIGTERM");
    await api?.exited;
    await stack?.stop();
  });

  const requestLines = () => jsonLines(api.output()).filter((line) => line.msg === "request" || line.msg === "request abandoned by the client");
  const lineFor = async (requestId: string) => {
    await within(`the log line of ${requestId}`, 10_000, () => requestLines().some((line) => line.requestId === requestId), 50);
    return requestLines().filter((line) => line.requestId === requestId);
  };

  it("when requests are answered, then each has one line with its id, method, path, status and duration, and health checks are debug", async () => {
    const { key } = await stack.newAccount();
    const missing = `rl-${randomUUID()}`;
    await call(apiUrl, "GET", `/v1/tasks/${randomUUID()}`, { key, headers: { "x-request-id": missing } });
    const health = `rl-${randomUUID()}`;
    await call(apiUrl, "GET", "/healthz", { headers: { "x-request-id": health } });

    const [line, ...more] = await lineFor(missing);
    expect(more).toEqual([]);
    expect(line).toMatchObject({ level: 30, name: "api", requestId: missing, method: "GET", status: 404 });
    expect(line!.path).toMatch(/^\/v1\/tasks\/[0-9a-f-]{36}$/);
    expect(line!.ms).toEqual(expect.any(Number));
    expect(await lineFor(health)).toEqual([expect.objectContaining({ level: 20, path: "/healthz", status: 200 })]);
  });

  it("when a path or query carries a secret, then the line has the path without it", async () => {
    const signed = `rl-${randomUUID()}`;
    const signature = `sig${randomUUID().replaceAll("-", "")}`;
    const taskId = randomUUID();
    await call(apiUrl, "GET", `/files/tasks/${taskId}/images/0?expires=9999999999&signature=${signature}`, { headers: { "x-request-id": signed } });
    const callback = `rl-${randomUUID()}`;
    const token = `tok${randomUUID().replaceAll("-", "")}`;
    await call(apiUrl, "POST", `/webhooks/kling/${taskId}/${token}`, { body: {}, headers: { "x-request-id": callback } });

    expect(await lineFor(signed)).toEqual([expect.objectContaining({ path: `/files/tasks/${taskId}/images/0`, status: 401 })]);
    expect(await lineFor(callback)).toEqual([expect.objectContaining({ method: "POST", path: `/webhooks/kling/${taskId}/[redacted]` })]);
    expect(api.output()).not.toContain(signature);
    expect(api.output()).not.toContain(token);
  });

  it("when a client aborts an image download, then it is a debug line marked aborted, with no error and no stack", async () => {
    const { key } = await stack.newAccount();
    const created = await call(apiUrl, "POST", "/v1/tasks", { key, body: { image: await testImage(), ...ratios } });
    expect(created.status).toBe(202);
    const task = await waitForTask(apiUrl, key, created.body.id, ["succeeded", "failed"], 30_000);
    expect(task.status).toBe("succeeded");
    // Make the stored image far larger than the socket buffers, so the download is still running
    // when the client goes: the server's pipeline must see the connection close under it.
    const { storageKey } = await stack.db.selectFrom("taskImage").select("storageKey").where("taskId", "=", task.id).executeTakeFirstOrThrow();
    const stored = path.join(stack.env.storageDir, storageKey!);
    await truncate(stored, 256 * 1024 * 1024);

    const aborted = `rl-${randomUUID()}`;
    const link = new URL(task.images[0].url);
    expect(link.origin).toBe(apiUrl);
    await new Promise<void>((resolve, reject) => {
      const socket = connect(Number(link.port), link.hostname, () => {
        socket.write(`GET ${link.pathname}${link.search} HTTP/1.1\r\nHost: ${link.host}\r\nx-request-id: ${aborted}\r\n\r\n`);
      });
      socket.once("data", (first) => {
        expect(first.toString("latin1")).toMatch(/^HTTP\/1\.1 200/);
        socket.destroy();
        resolve();
      });
      socket.once("error", reject);
    });

    expect(await lineFor(aborted)).toEqual([
      expect.objectContaining({ level: 20, msg: "request abandoned by the client", path: link.pathname, status: 200, aborted: true }),
    ]);
    const errors = jsonLines(api.output()).filter((line) => line.level >= 50);
    expect(errors).toEqual([]);
    expect(api.output()).not.toContain("ERR_STREAM_PREMATURE_CLOSE");
  });
});
