import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, waitForTask } from "../support/http.ts";
import { imageSize, makeImage } from "../support/images.ts";
import { startStack, type Stack } from "../support/stack.ts";

// A URL image is downloaded and checked by us once; the provider then gets our stored copy (inline
// Base64 or a signed link to it), never the caller's URL again. The image host here changes its
// bytes after the first download, or answers only the first download: whatever the provider
// expanded proves which bytes it got.

const ratios = { up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1 };

let host: Server;
let hostUrl: string;
let first: Buffer;
let later: Buffer;
const requests = new Map<string, number>();

beforeAll(async () => {
  first = await makeImage(400, 300);
  later = await makeImage(600, 300);
  host = createServer((req, res) => {
    const path = req.url ?? "";
    const seen = (requests.get(path) ?? 0) + 1;
    requests.set(path, seen);
    // Another picture from the second download on: a changed file, or a server that answers per client.
    if (path.startsWith("/changing/")) return res.writeHead(200, { "content-type": "image/png" }).end(seen === 1 ? first : later);
    // Reachable once: as a URL only we can reach would be (an intranet host, a short-lived link).
    if (path.startsWith("/once/") && seen === 1) return res.writeHead(200, { "content-type": "image/png" }).end(first);
    res.writeHead(404).end("gone");
  });
  await new Promise<void>((resolve) => host.listen(0, "127.0.0.1", resolve));
  hostUrl = `http://127.0.0.1:${(host.address() as AddressInfo).port}`;
});
afterAll(async () => {
  host?.closeAllConnections();
  await new Promise((resolve) => host?.close(resolve));
});

describe.each(["auto", "link"])("PROVIDER_IMAGE_DELIVERY=%s", (delivery) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ workerEnv: { PROVIDER_IMAGE_DELIVERY: delivery } });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it.each(["changing", "once"])("when the image host serves other bytes after our check (%s), then the provider expands the bytes we checked", async (kind) => {
    const account = await stack.newAccount();
    const path = `/${kind}/${delivery}.png`;
    const created = await call(stack.api.url, "POST", "/v1/tasks", { key: account.key, body: { image: `${hostUrl}${path}`, ...ratios } });
    expect(created.status, JSON.stringify(created.body)).toBe(202);
    const done = await waitForTask(stack.api.url, account.key, created.body.id, ["succeeded", "failed"]);
    expect(done.status, JSON.stringify(done)).toBe("succeeded");
    // 400x300 grown by 0.1 on every side: the first picture's result, not the later 600x300's.
    expect(done.images.map((i: { width: number; height: number }) => [i.width, i.height])).toEqual([[480, 360]]);
    const result = await fetch(done.images[0].url);
    expect(await imageSize(Buffer.from(await result.arrayBuffer()))).toMatchObject({ width: 480, height: 360 });
    // Downloaded once, by us.
    expect(requests.get(path)).toBe(1);
    // The stored copy is what the account reads back as the task's source (the dashboard shows it).
    const source = await fetch(new URL(`/v1/tasks/${done.id}/source`, stack.api.url), { headers: { authorization: `Bearer ${account.key}` } });
    expect(source.status).toBe(200);
    expect(Buffer.from(await source.arrayBuffer()).equals(first)).toBe(true);
  });
});
