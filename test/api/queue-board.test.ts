import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startStack, type Stack } from "../support/stack.ts";

const adminToken = "board-admin-token-0123456789";
let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ withWorker: false, apiEnv: { ADMIN_TOKEN: adminToken } });
});
afterAll(async () => {
  await stack?.stop();
});

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

describe("the queue board at /admin/queues", () => {
  it("when no or a wrong admin credential is sent (an account key included), then 401 asks for Basic auth and nothing of the board is served", async () => {
    const { key } = await stack.newAccount();
    for (const authorization of [undefined, `Bearer ${key}`, `Bearer ${adminToken}x`, basic("admin", "wrong"), basic(adminToken, ""), "Basic !!!", `Bearer ${adminToken.slice(0, -1)}`]) {
      for (const path of ["/admin/queues", "/admin/queues/api/queues"]) {
        const res = await fetch(`${stack.api.url}${path}`, { headers: authorization ? { authorization } : {} });
        expect(res.status, `${authorization} ${path}`).toBe(401);
        expect(res.headers.get("www-authenticate")).toMatch(/^Basic realm="queues"/);
        expect(await res.text()).toBe("admin credential required");
      }
    }
  });

  it("when the admin token is sent as Bearer or as a Basic password, then the board and its API answer with every queue of the job catalog", async () => {
    for (const authorization of [`Bearer ${adminToken}`, basic("anyone", adminToken)]) {
      const page = await fetch(`${stack.api.url}/admin/queues`, { headers: { authorization } });
      expect(page.status).toBe(200);
      expect(await page.text()).toContain("<html");
      const api = await fetch(`${stack.api.url}/admin/queues/api/queues`, { headers: { authorization } });
      expect(api.status).toBe(200);
      const body = (await api.json()) as { queues: { name: string }[] };
      expect(body.queues.map((q) => q.name).sort()).toEqual(["{archive}", "{reconcile}", "{source}", "{submit}", "{webhook-sweep}", "{webhook}"]);
    }
  });

  it("when ADMIN_TOKEN is unset, then /admin/queues is a 404 like any unknown path", async () => {
    const plain = await stack.startApi({ ADMIN_TOKEN: "" });
    const res = await fetch(`${plain.url}/admin/queues`, { headers: { authorization: `Bearer ${adminToken}` } });
    expect(res.status).toBe(404);
  });
});
