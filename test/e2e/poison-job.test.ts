import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnService, type ChildService } from "../support/child-processes.ts";
import { call, waitForTask } from "../support/http.ts";
import { makeImage } from "../support/images.ts";
import { startStack, type Stack } from "../support/stack.ts";

// A job whose run takes its worker process down, every time (a poison message): after
// JOB_MAX_CRASHES crashes it is not run again, its task fails with the reason, and every other task
// goes on. The crash is a real one: the worker process is SIGKILLed while it works on that task.

let stack: Stack;
let images: Server;
let base: string;
let photo: Buffer;
// Resolved each time the poison image is asked for: the worker is then busy with that task.
let poisonRequested: () => void = () => undefined;
const hanging = new Set<ServerResponse>();

beforeAll(async () => {
  photo = await makeImage(400, 300);
  images = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.url === "/poison.png") {
      hanging.add(res);
      poisonRequested();
      return;
    }
    res.writeHead(200, { "content-type": "image/png" }).end(photo);
  });
  await new Promise<void>((resolve) => images.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(images.address() as AddressInfo).port}`;
  stack = await startStack({ withWorker: false });
});
afterAll(async () => {
  for (const res of hanging) res.destroy();
  images?.closeAllConnections();
  await new Promise((resolve) => images?.close(resolve));
  await stack?.stop();
});

const body = (image: string) => ({ image, up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1 });

describe("poison messages", () => {
  it("when working on a task kills the worker each time, then after JOB_MAX_CRASHES the task fails as worker_crashed and the next worker carries on with the rest", async () => {
    const { key } = await stack.newAccount();
    const env = stack.workerEnv({ JOB_LOCK_MS: "1500", JOB_MAX_CRASHES: "2" });
    const poison = (await call(stack.api.url, "POST", "/v1/tasks", { key, body: body(`${base}/poison.png`) })).body.id as string;

    let crashes = 0;
    let worker: ChildService | undefined;
    try {
      for (; crashes < 2; crashes++) {
        const requested = new Promise<void>((resolve) => (poisonRequested = resolve));
        worker = spawnService("worker", { ...env, LOG_LEVEL: "info" });
        await worker.ready;
        await requested;
        await worker.kill("SIGKILL");
      }
      poisonRequested = () => undefined;
      // A worker that keeps running: it finds the job failed as stalled too often and parks it.
      worker = spawnService("worker", { ...env, LOG_LEVEL: "info" });
      await worker.ready;
      const parked = await waitForTask(stack.api.url, key, poison, ["failed", "succeeded"], 45_000);
      expect(parked).toMatchObject({ status: "failed", failure: { class: "worker_crashed", message: expect.stringMatching(/stopped a worker process 2 times/) } });

      // The same worker goes on with other work.
      const healthy = (await call(stack.api.url, "POST", "/v1/tasks", { key, body: body(`${base}/photo.png`) })).body.id as string;
      expect((await waitForTask(stack.api.url, key, healthy, ["failed", "succeeded"], 30_000)).status).toBe("succeeded");
      expect(worker.alive()).toBe(true);
    } finally {
      await worker?.kill("SIGKILL");
    }
  }, 120_000);
});
