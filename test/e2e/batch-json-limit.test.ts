import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sendHeadOnly } from "../fuzz/hostile-kit.ts";
import { startStack, type Stack } from "../support/stack.ts";

// A JSON batch is held whole while it is read (its fields may follow its items), so it has a size
// limit (32 MB); the streamed forms do not. A client over the limit is told where to go instead,
// whether it declared its length or streamed past it.
describe("a JSON batch over its size limit", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ withWorker: false });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it("when its declared length is over 32 MB, then it is refused 413 before a byte is read", async () => {
    const { key } = await stack.newAccount();
    const answer = await sendHeadOnly(stack.api.url, {
      method: "POST",
      path: "/v1/batches",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      declaredLength: 33 * 1024 * 1024,
    });
    answer.socket.destroy();
    expect(answer.status).toBe(413);
  });

  it("when it is sent whole past the limit, then the answer names the limit and the streamed forms", async () => {
    const { key } = await stack.newAccount();
    const item = JSON.stringify({ image: "https://images.example.com/p.jpg", up_expansion_ratio: 0.1, down_expansion_ratio: 0, left_expansion_ratio: 0, right_expansion_ratio: 0 });
    const body = `{"items":[${Array(Math.ceil((33 * 1024 * 1024) / (item.length + 1))).fill(item).join(",")}]}`;
    const answer = await fetch(new URL("/v1/batches", stack.api.url), {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body,
    });
    expect(answer.status).toBe(413);
    const problem = (await answer.json()) as { detail: string };
    expect(problem.detail).toMatch(/the limit is 32 MB/);
    expect(problem.detail).toMatch(/NDJSON \(application\/x-ndjson\) or CSV \(text\/csv\)/);
  });
});
