import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNativeClient, waitForTask } from "../../apps/client/native-client.ts";
import { spawnService, type ChildService } from "../support/child-processes.ts";
import { makeImage } from "../support/images.ts";
import { startStack, type Stack } from "../support/stack.ts";

// An OTLP/HTTP receiver (JSON encoding, what the exporter sends) in this process; the API runs
// here and the worker as its own process, both exporting to it.
type ReceivedSpan = { service: string; traceId: string; name: string };
const received: ReceivedSpan[] = [];
let receiver: Server;
let receiverUrl: string;

type OtlpExport = {
  resourceSpans?: {
    resource?: { attributes?: { key: string; value: { stringValue?: string } }[] };
    scopeSpans?: { spans?: { traceId: string; name: string }[] }[];
  }[];
};

let stack: Stack;
let worker: ChildService;
beforeAll(async () => {
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as OtlpExport;
      for (const rs of body.resourceSpans ?? []) {
        const service = rs.resource?.attributes?.find((a) => a.key === "service.name")?.value.stringValue ?? "?";
        for (const ss of rs.scopeSpans ?? []) for (const span of ss.spans ?? []) received.push({ service, traceId: span.traceId, name: span.name });
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  // Export every 100 ms instead of every 5 s (the SDK's standard variable), here and in the child.
  process.env.OTEL_BSP_SCHEDULE_DELAY = "100";
  stack = await startStack({ withWorker: false, apiEnv: { OTEL_EXPORTER_OTLP_ENDPOINT: receiverUrl } });
  worker = spawnService("worker", { ...stack.workerEnv(), OTEL_EXPORTER_OTLP_ENDPOINT: receiverUrl, OTEL_BSP_SCHEDULE_DELAY: "100", LOG_LEVEL: "info" });
  await worker.ready;
});
afterAll(async () => {
  await worker?.kill("SIGTERM");
  await stack?.stop();
  receiver?.close();
});

describe("traces", () => {
  it("when a task runs, then the API's and the worker process's spans for it share one trace id: intake, queue, provider, callback, archive", async () => {
    const { key } = await stack.newAccount();
    const client = createNativeClient({ baseUrl: stack.api.url, apiKey: key });
    const image = (await makeImage(400, 300)).toString("base64");
    const { data } = await client.POST("/v1/tasks", { body: { image, up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1 } });
    const taskId = data!.id;
    expect((await waitForTask(client, taskId)).status).toBe("succeeded");

    const traceId = taskId.replaceAll("-", "");
    const inTrace = () => received.filter((s) => s.traceId === traceId);
    const names = (service: string) => new Set(inTrace().filter((s) => s.service === service).map((s) => s.name));
    await expect
      .poll(() => [...names("kling-worker")].some((n) => /archive/.test(n)) && names("kling-api").has("provider.callback"), { timeout: 15_000, interval: 100 })
      .toBe(true);
    const api = names("kling-api");
    const work = names("kling-worker");
    expect(api).toContain("task.enqueue");
    expect(api).toContain("provider.callback");
    expect([...api].some((n) => /^add /.test(n)), `api spans: ${[...api].join(", ")}`).toBe(true);
    expect(work).toContain("provider create");
    expect([...work].some((n) => /^process {submit}/.test(n)), `worker spans: ${[...work].join(", ")}`).toBe(true);
    expect([...work].some((n) => /^process {archive}/.test(n)), `worker spans: ${[...work].join(", ")}`).toBe(true);
    // The HTTP request that created it has its own span (linked, not parent: the task's trace is the task's).
    expect(received.some((s) => s.service === "kling-api" && s.name === "POST /v1/tasks/")).toBe(true);
  });
});
