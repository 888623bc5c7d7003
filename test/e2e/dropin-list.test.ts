import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newAccessKey } from "../support/access-keys.ts";
import { call, waitForTask } from "../support/http.ts";
import { makeImage } from "../support/images.ts";
import { createKlingClient, type KlingClient } from "../support/kling-official-client.ts";
import { startStack, type Stack } from "../support/stack.ts";

// KLING.md "List": GET .../images/editing/expand?pageNum=&pageSize=, `data` an array of task
// objects, on both path families (Kling's /v1 and CometAPI's /kling/v1).
let stack: Stack;
let image: string;

beforeAll(async () => {
  stack = await startStack();
  image = (await makeImage(320, 320)).toString("base64");
});
afterAll(() => stack?.stop());

const families = [
  ["Kling's /v1", ""],
  ["CometAPI's /kling/v1", "/kling"],
] as const;

const body = (externalTaskId: string) => ({
  image,
  up_expansion_ratio: 0.1,
  down_expansion_ratio: 0.1,
  left_expansion_ratio: 0.1,
  right_expansion_ratio: 0.1,
  external_task_id: externalTaskId,
});

// An account with a Kling client (JWT) on each path family, and its API key for the native reads.
const newClientAccount = async () => {
  const account = await stack.newAccount();
  const pair = await newAccessKey(stack, account.accountId);
  const clientOn = (prefix: string) => createKlingClient({ baseUrl: `${stack.api.url}${prefix}`, ...pair });
  return { ...account, clientOn };
};

// Image links are signed when served (expires = now + TTL), so two reads a second apart differ in
// their query string only.
const withoutLinkSignatures = (task: any) =>
  task.task_result
    ? { ...task, task_result: { images: task.task_result.images.map((i: any) => ({ ...i, url: new URL(i.url).pathname })) } }
    : task;

describe("the drop-in list route", () => {
  it("when an account pages through its tasks on either path family, then they come newest first, each once, only its own, in the provider's envelope and task shape", async () => {
    const owner = await newClientAccount();
    const other = await newClientAccount();
    const ownIds: string[] = [];
    const otherIds: string[] = [];
    for (let i = 0; i < 5; i++) {
      const mine = await owner.clientOn("").create(body(`list-${i}`));
      expect(mine.code).toBe(0);
      ownIds.push(mine.data.task_id);
      // The other account's tasks land in between, with the same external ids.
      if (i < 2) otherIds.push((await other.clientOn("/kling").create(body(`list-${i}`))).data.task_id);
    }
    // Finished tasks, so the list can be compared with the GET, images included.
    for (const id of ownIds) expect((await waitForTask(stack.api.url, owner.key, id, ["succeeded", "failed"])).status).toBe("succeeded");
    const newestFirst = [...ownIds].reverse();

    for (const [, prefix] of families) {
      const client: KlingClient = owner.clientOn(prefix);
      const seen: string[] = [];
      for (let pageNum = 1; pageNum <= 3; pageNum++) {
        const page = await client.list({ pageNum, pageSize: 2 });
        expect(page).toMatchObject({ status: 200, code: 0, message: "SUCCEED", request_id: expect.any(String) });
        expect(page.data).toHaveLength(pageNum < 3 ? 2 : 1);
        for (const task of page.data) {
          const got = await client.get(task.task_id);
          expect(withoutLinkSignatures(task)).toEqual(withoutLinkSignatures(got.data));
          expect(task.task_result.images).toHaveLength(1);
          expect((await client.download(task.task_result.images[0].url)).status).toBe(200);
        }
        seen.push(...page.data.map((t) => t.task_id));
      }
      expect(seen).toEqual(newestFirst);
      const createdAt = (await client.list({ pageSize: 10 })).data.map((t) => t.created_at);
      expect(createdAt).toEqual([...createdAt].sort((a, b) => b - a));

      expect((await client.list({ pageNum: 4, pageSize: 2 })).data).toEqual([]);
      // Defaults (pageNum 1, pageSize 30) list all five.
      expect((await client.list()).data.map((t) => t.task_id)).toEqual(newestFirst);
      // The other account sees only its own two.
      expect((await other.clientOn(prefix).list()).data.map((t) => t.task_id)).toEqual([...otherIds].reverse());
    }
    // An API key lists the same account's tasks as its JWT.
    const byKey = await call(stack.api.url, "GET", "/kling/v1/images/editing/expand?pageSize=10", { key: owner.key });
    expect(byKey.body.data.map((t: { task_id: string }) => t.task_id)).toEqual(newestFirst);
  });

  it.each(families)("when pageNum or pageSize is out of range or not a whole number on %s, then it is 400/1201 naming the field", async (_name, prefix) => {
    const { key } = await stack.newAccount();
    const path = `${prefix}/v1/images/editing/expand`;
    const bad: [string, string][] = [
      ["pageNum=0", "pageNum"],
      ["pageNum=-1", "pageNum"],
      ["pageNum=1001", "pageNum"],
      ["pageNum=1.5", "pageNum"],
      ["pageNum=abc", "pageNum"],
      ["pageNum=", "pageNum"],
      ["pageNum=1&pageNum=2", "pageNum"],
      ["pageSize=0", "pageSize"],
      ["pageSize=501", "pageSize"],
      ["pageSize=2.5", "pageSize"],
      ["pageSize=ten", "pageSize"],
    ];
    for (const [query, field] of bad) {
      const answer = await call(stack.api.url, "GET", `${path}?${query}`, { key });
      expect(answer.status, query).toBe(400);
      expect(answer.body, query).toMatchObject({ code: 1201, request_id: expect.any(String) });
      expect(answer.body.message, query).toContain(field);
    }
    const both = await call(stack.api.url, "GET", `${path}?pageNum=0&pageSize=0`, { key });
    expect(both.body.message).toContain("pageNum");
    expect(both.body.message).toContain("pageSize");
    // The documented limits themselves are accepted.
    const edges = await call(stack.api.url, "GET", `${path}?pageNum=1000&pageSize=500`, { key });
    expect(edges.status).toBe(200);
    expect(edges.body).toMatchObject({ code: 0, data: [] });
  });
});
