import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inject } from "vitest";
import type { ApiDeps } from "../../apps/api/api-deps.ts";
import { buildApp } from "../../apps/api/app.ts";
import { openApiDocument } from "../../apps/api/openapi/openapi-document.ts";
import { opaqueMounts, routeDocs } from "../../apps/api/openapi/route-catalog.ts";
import { generateClientTypes } from "../../apps/client/generate-types.ts";
import { createNativeClient, waitForTask } from "../../apps/client/native-client.ts";
import { readFile } from "node:fs/promises";
import { listExpressRoutes, toOpenApiPath } from "../support/express-routes.ts";
import { makeImage } from "../support/images.ts";
import { responseSchemaErrors, webhookSchemaErrors } from "../support/openapi-validator.ts";
import { openSse } from "../support/sse.ts";
import { startStack, type Stack } from "../support/stack.ts";
import { startWebhookConsumer, type WebhookConsumer } from "../support/webhook-consumer.ts";

// Anything a router reads while being built; nothing is called (no request is served).
const inert: unknown = new Proxy(() => inert, { get: (_t, p) => (p === "then" ? undefined : inert), apply: () => inert });

let stack: Stack;
let redis: Redis;
let consumer: WebhookConsumer;
beforeAll(async () => {
  consumer = await startWebhookConsumer();
  stack = await startStack({ apiEnv: { ALLOWED_PRIVATE_HOSTS: "127.0.0.1" } });
  redis = new Redis(inject("redisUrl"), { lazyConnect: true });
});
afterAll(async () => {
  redis?.disconnect();
  await stack?.stop();
  await consumer?.close();
});

const documented = () => new Set(routeDocs.map((r) => `${r.method.toUpperCase()} ${r.path}`));

describe("the OpenAPI document", () => {
  it("when the app is built (board included), then every Express route is described and every description has a route", () => {
    const deps = new Proxy({} as ApiDeps, {
      get: (_t, p) =>
        p === "operations"
          ? { scrapeMetrics: inert, adminToken: "admin-token-0123456789", queue: (kind: string) => new Queue(kind, { connection: redis, prefix: "openapi-test" }) }
          : inert,
    });
    const routes = listExpressRoutes(buildApp(deps), { opaque: opaqueMounts }).map((r) => `${r.method.toUpperCase()} ${toOpenApiPath(r.path)}`);
    expect(routes.length).toBeGreaterThan(15);
    const missing = routes.filter((r) => !documented().has(r));
    expect(missing, "routes without a description in apps/api/openapi/route-catalog.ts").toEqual([]);
    const phantom = [...documented()].filter((d) => !routes.includes(d));
    expect(phantom, "descriptions without a route").toEqual([]);
  });

  it("when an undocumented route is added, then the walk finds it (the check above can fail)", async () => {
    const { default: express } = await import("express");
    const app = express();
    const router = express.Router();
    router.get("/:id/secret", (_req, res) => void res.end());
    app.use("/v1/hidden", router);
    expect(listExpressRoutes(app).map((r) => `${r.method} ${toOpenApiPath(r.path)}`)).toEqual(["get /v1/hidden/{id}/secret"]);
  });

  it("when /openapi.json is fetched, then it is the 3.1 document with both auth schemes, the errors and the outbound callbacks", async () => {
    const res = await fetch(`${stack.api.url}/openapi.json`);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as {
      openapi: string;
      components: { securitySchemes: object; schemas: object };
      webhooks: object;
      paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
    };
    expect(doc).toEqual(JSON.parse(JSON.stringify(openApiDocument())));
    expect(doc.openapi).toBe("3.1.0");
    expect(Object.keys(doc.components.securitySchemes).sort()).toEqual(["apiKey", "klingJwt", "metricsToken"]);
    expect(Object.keys(doc.webhooks).sort()).toEqual([
      "batch.completed",
      "batch.progress",
      "kling.failed",
      "kling.processing",
      "kling.submitted",
      "kling.succeed",
      "task.canceled",
      "task.failed",
      "task.succeeded",
    ]);
    expect(doc.components.schemas).toHaveProperty("Problem");
    expect(doc.components.schemas).toHaveProperty("ProviderError");
    expect(doc.paths["/kling/v1/images/editing/expand"]?.post?.responses["401"]).toBeDefined();
  });

  it("when the client's types are generated again, then they equal the committed apps/client/openapi-types.ts", async () => {
    const committed = await readFile(new URL("../../apps/client/openapi-types.ts", import.meta.url), "utf8");
    expect(committed, "run `npm run client:generate`").toBe(await generateClientTypes());
  });

  it("when /docs is opened, then the page and its renderer are served from this server", async () => {
    const page = await fetch(`${stack.api.url}/docs`);
    expect(page.status).toBe(200);
    const html = await page.text();
    const scripts = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1] ?? "");
    expect(scripts.length).toBeGreaterThanOrEqual(3);
    for (const src of scripts) {
      expect(src.startsWith("/docs/assets/")).toBe(true);
      const asset = await fetch(`${stack.api.url}${src}`);
      expect(asset.status, src).toBe(200);
      expect((await asset.arrayBuffer()).byteLength, src).toBeGreaterThan(10);
    }
    expect((await fetch(`${stack.api.url}/docs/assets/..%2fpackage.json`)).status).toBe(404);
    expect((await fetch(`${stack.api.url}/docs/assets/index.html`)).status).toBe(404);
  });
});

describe("answers match the document", () => {
  it("when a task is created, read, listed and its history read through the typed client, then each answer validates against its schema", async () => {
    const { key } = await stack.newAccount();
    const client = createNativeClient({ baseUrl: stack.api.url, apiKey: key });
    const image = (await makeImage(400, 300)).toString("base64");
    const created = await client.POST("/v1/tasks", {
      body: { image, up_expansion_ratio: 0.2, down_expansion_ratio: 0.2, left_expansion_ratio: 0.1, right_expansion_ratio: 0.3, n: 1, external_task_id: "contract-1" },
    });
    expect(created.response.status).toBe(202);
    expect(responseSchemaErrors("post", "/v1/tasks", 202, "application/json", created.data)).toEqual([]);
    const taskId = created.data!.id;

    const done = await waitForTask(client, taskId);
    expect(done.status).toBe("succeeded");
    expect(responseSchemaErrors("get", "/v1/tasks/{taskId}", 200, "application/json", done)).toEqual([]);
    expect(done.images[0]).toMatchObject({ width: 560, height: 420 });

    const list = await client.GET("/v1/tasks", { params: { query: { limit: 5 } } });
    expect(responseSchemaErrors("get", "/v1/tasks", 200, "application/json", list.data)).toEqual([]);
    const events = await client.GET("/v1/tasks/{taskId}/events", { params: { path: { taskId } } });
    expect(events.data!.data.length).toBeGreaterThanOrEqual(4);
    expect(responseSchemaErrors("get", "/v1/tasks/{taskId}/events", 200, "application/json", events.data)).toEqual([]);

    const source = await client.GET("/v1/tasks/{taskId}/source", { params: { path: { taskId } }, parseAs: "arrayBuffer" });
    expect(source.response.status).toBe(200);
    expect(source.response.headers.get("content-type")).toMatch(/^image\//);

    // The drop-in shapes of the same task.
    const headers = { authorization: `Bearer ${key}` };
    for (const prefix of ["/kling/v1/images/editing/expand", "/v1/images/editing/expand"]) {
      const one = await fetch(`${stack.api.url}${prefix}/${taskId}`, { headers });
      expect(responseSchemaErrors("get", `${prefix}/{taskId}`, 200, "application/json", await one.json())).toEqual([]);
      const page = await fetch(`${stack.api.url}${prefix}?pageSize=3`, { headers });
      expect(responseSchemaErrors("get", prefix, 200, "application/json", await page.json())).toEqual([]);
    }
    const dropinCreate = await fetch(`${stack.api.url}/kling/v1/images/editing/expand`, {
      method: "POST",
      headers: { ...headers, "content-type": "application/json" },
      body: JSON.stringify({ image, up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1 }),
    });
    expect(dropinCreate.status).toBe(200);
    expect(responseSchemaErrors("post", "/kling/v1/images/editing/expand", 200, "application/json", await dropinCreate.json())).toEqual([]);
  });

  it("when requests are refused (no key, bad body, unknown task, drop-in without key), then each error validates against the document", async () => {
    const { key } = await stack.newAccount();
    const client = createNativeClient({ baseUrl: stack.api.url, apiKey: key });
    const anonymous = createNativeClient({ baseUrl: stack.api.url, apiKey: "not-a-key-at-all" });

    const unauth = await anonymous.GET("/v1/tasks", {});
    expect(unauth.response.status).toBe(401);
    expect(responseSchemaErrors("get", "/v1/tasks", 401, "application/problem+json", unauth.error)).toEqual([]);

    const invalid = await client.POST("/v1/tasks", {
      body: { image: "data:image/png;base64,AAAA", up_expansion_ratio: 5, left_expansion_ratio: 0, right_expansion_ratio: 0 },
    });
    expect(invalid.response.status).toBe(400);
    expect(invalid.error?.errors?.map((e) => e.field)).toEqual(expect.arrayContaining(["image", "up_expansion_ratio"]));
    expect(responseSchemaErrors("post", "/v1/tasks", 400, "application/problem+json", invalid.error)).toEqual([]);

    const missing = await client.GET("/v1/tasks/{taskId}", { params: { path: { taskId: "00000000-0000-4000-8000-000000000000" } } });
    expect(missing.response.status).toBe(404);
    expect(responseSchemaErrors("get", "/v1/tasks/{taskId}", 404, "application/problem+json", missing.error)).toEqual([]);

    const dropin = await fetch(`${stack.api.url}/kling/v1/images/editing/expand/anything`);
    expect(dropin.status).toBe(401);
    expect(responseSchemaErrors("get", "/kling/v1/images/editing/expand/{taskId}", 401, "application/json", await dropin.json())).toEqual([]);

    const ready = await fetch(`${stack.api.url}/readyz`);
    expect(responseSchemaErrors("get", "/readyz", ready.status, "application/json", await ready.json())).toEqual([]);
  });

  it("when a batch and a drop-in task with callback URLs run, then the batch, delivery, secret and provider-route answers, the task and batch stream frames and every callback sent validate against the document", async () => {
    const { key } = await stack.newAccount();
    const headers = { authorization: `Bearer ${key}` };
    const get = async (path: string) => {
      const res = await fetch(`${stack.api.url}${path}`, { headers });
      expect(res.status, path).toBe(200);
      return res.json();
    };
    const post = (path: string, body: unknown) =>
      fetch(`${stack.api.url}${path}`, { method: "POST", headers: { ...headers, "content-type": "application/json" }, body: JSON.stringify(body) });
    const image = (await makeImage(400, 300)).toString("base64");
    const ratios = { up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1 };
    const batchBody = {
      name: "contract",
      defaults: { ...ratios, callback_url: `${consumer.url}/task` },
      callback_url: `${consumer.url}/batch`,
      items: [{ image }, { image, n: 2 }],
    };

    const dry = await post("/v1/batches?dry_run=true", batchBody);
    expect(dry.status, await dry.clone().text()).toBe(200);
    expect(responseSchemaErrors("post", "/v1/batches", 200, "application/json", await dry.json())).toEqual([]);
    const created = await post("/v1/batches", batchBody);
    expect(created.status).toBe(201);
    const batch = (await created.json()) as { id: string };
    expect(responseSchemaErrors("post", "/v1/batches", 201, "application/json", batch)).toEqual([]);
    const dropin = await post("/kling/v1/images/editing/expand", { image, ...ratios, callback_url: `${consumer.url}/dropin` });
    expect(dropin.status).toBe(200);

    // Reading the batch records its end once its tasks have ended.
    const deadline = Date.now() + 60_000;
    let shown: { status: string };
    for (;;) {
      shown = (await get(`/v1/batches/${batch.id}`)) as { status: string };
      expect(responseSchemaErrors("get", "/v1/batches/{batchId}", 200, "application/json", shown)).toEqual([]);
      if (shown.status === "completed" || Date.now() > deadline) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    expect(shown.status).toBe("completed");
    expect(responseSchemaErrors("get", "/v1/batches", 200, "application/json", await get("/v1/batches?limit=5"))).toEqual([]);
    const tasks = (await get(`/v1/batches/${batch.id}/tasks`)) as { data: { id: string }[] };
    expect(tasks.data).toHaveLength(2);
    expect(responseSchemaErrors("get", "/v1/batches/{batchId}/tasks", 200, "application/json", tasks)).toEqual([]);
    const waited = await get(`/v1/tasks/${tasks.data[0]!.id}?wait=1`);
    expect(responseSchemaErrors("get", "/v1/tasks/{taskId}", 200, "application/json", waited)).toEqual([]);

    // The streams' frames carry the schemas their descriptions name (the task's and the batch's as GET shows them).
    const taskStream = await openSse(`${stack.api.url}/v1/tasks/${tasks.data[0]!.id}/stream`, { ...headers, "last-event-id": "0" });
    expect(taskStream.status).toBe(200);
    const frames = [];
    for (let f = await taskStream.next(); ; f = await taskStream.next()) {
      frames.push(f);
      if (f.event === "end") break;
    }
    taskStream.close();
    expect(frames.map((f) => f.event)).toEqual([...frames.slice(0, -2).map(() => "transition"), "task", "end"]);
    expect(frames.length).toBeGreaterThanOrEqual(5);
    for (const f of frames.slice(0, -2)) {
      expect(responseSchemaErrors("get", "/v1/tasks/{taskId}/events", 200, "application/json", { data: [JSON.parse(f.data)] })).toEqual([]);
    }
    expect(responseSchemaErrors("get", "/v1/tasks/{taskId}", 200, "application/json", JSON.parse(frames.at(-2)!.data))).toEqual([]);
    const batchStream = await openSse(`${stack.api.url}/v1/batches/${batch.id}/stream`, headers);
    const batchFrame = await batchStream.next();
    expect(batchFrame.event).toBe("batch");
    expect(responseSchemaErrors("get", "/v1/batches/{batchId}", 200, "application/json", JSON.parse(batchFrame.data))).toEqual([]);
    expect((await batchStream.next()).event).toBe("end");
    batchStream.close();

    // Every callback: two task.succeeded, batch.completed, and the drop-in task's kling.* events.
    await consumer.waitFor("/task", 2, 30_000);
    await consumer.waitFor("/batch", 1, 30_000);
    const dropinDone = Date.now() + 30_000;
    while (!consumer.received.some((r) => r.path === "/dropin" && (JSON.parse(r.body) as { task_status?: string }).task_status === "succeed")) {
      if (Date.now() > dropinDone) throw new Error("no kling.succeed callback");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const deliveries = (await get("/v1/webhooks/deliveries?limit=200")) as { data: { id: string; event_type: string }[] };
    expect(responseSchemaErrors("get", "/v1/webhooks/deliveries", 200, "application/json", deliveries)).toEqual([]);
    const typeOf = new Map(deliveries.data.map((d) => [d.id, d.event_type]));
    const sent = consumer.received.filter((r) => typeOf.has(String(r.headers["webhook-id"])));
    const types = sent.map((r) => typeOf.get(String(r.headers["webhook-id"]))!);
    expect(types).toEqual(expect.arrayContaining(["task.succeeded", "batch.completed", "kling.submitted", "kling.succeed"]));
    for (const r of sent) {
      const type = typeOf.get(String(r.headers["webhook-id"]))!;
      expect(webhookSchemaErrors(type, JSON.parse(r.body)), type).toEqual([]);
    }
    const one = await get(`/v1/webhooks/deliveries/${deliveries.data[0]!.id}`);
    expect(responseSchemaErrors("get", "/v1/webhooks/deliveries/{id}", 200, "application/json", one)).toEqual([]);
    expect(responseSchemaErrors("get", "/v1/webhooks/secret", 200, "application/json", await get("/v1/webhooks/secret"))).toEqual([]);

    const routes = (await get("/v1/provider/routes")) as { data: { configured: boolean; state: unknown; tasks: number }[] };
    expect(routes.data[0]).toMatchObject({ configured: true, tasks: 3 });
    expect(routes.data[0]!.state).not.toBeNull();
    expect(responseSchemaErrors("get", "/v1/provider/routes", 200, "application/json", routes)).toEqual([]);
  });

  it("when an answer does not match, then the validator says so (the checks above can fail)", () => {
    expect(responseSchemaErrors("get", "/v1/tasks/{taskId}", 200, "application/json", { id: "x", status: "exploded" }).length).toBeGreaterThan(0);
    expect(responseSchemaErrors("get", "/v1/tasks/{taskId}", 418, "application/json", {})).toEqual([
      "the document has no application/json answer 418 for get /v1/tasks/{taskId}",
    ]);
    expect(webhookSchemaErrors("batch.completed", { type: "batch.completed", timestamp: new Date().toISOString(), data: { id: "x" } }).length).toBeGreaterThan(0);
    expect(webhookSchemaErrors("kling.succeed", { type: "kling.succeed", timestamp: new Date().toISOString(), data: {} }).length).toBeGreaterThan(0);
  });
});
