import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningSimulator } from "../../apps/simulator/simulator.server.ts";
import { makeTestImage, providerApi, randomToken, startTestSimulator, validBody } from "./sim-test-kit.ts";

let sim: RunningSimulator;
let image: string;

beforeAll(async () => {
  // Tasks stay as created until a test ends them (none does here): with a 2 s run, a get more than
  // 2 s after its create (a loaded machine) saw the task move on.
  sim = await startTestSimulator({ SIM_CLOCK: "manual" });
  image = (await makeTestImage()).toString("base64");
});
afterAll(() => sim.stop());

describe("provider API: create, get, list", () => {
  for (const family of ["", "/kling"] as const) {
    it(`when a task is created through '${family || "/"}v1', then the create and the get answer Kling's envelope and task object`, async () => {
      const api = providerApi(sim, randomToken(), family);
      const body = validBody(image);
      const askedAt = Date.now();
      const created = await api.create(body);
      const answeredAt = Date.now();
      expect(created.status).toBe(200);
      expect(created.body).toMatchObject({ code: 0, message: "SUCCEED", request_id: expect.any(String) });
      const task = created.body.data;
      expect(task).toMatchObject({
        task_id: expect.stringMatching(/^\d{18}$/),
        task_status: "submitted",
        task_status_msg: "",
        task_info: { external_task_id: body.external_task_id },
      });
      expect(task.created_at).toBe(task.updated_at);
      expect(task.created_at).toBeGreaterThanOrEqual(askedAt);
      expect(task.created_at).toBeLessThanOrEqual(answeredAt);
      expect(task).not.toHaveProperty("task_result");

      const got = await api.get(task.task_id);
      expect(got.status).toBe(200);
      expect(got.body).toMatchObject({ code: 0, message: "SUCCEED", data: task });
    });
  }

  it("when a task is looked up by its external_task_id, then the same task is answered", async () => {
    const api = providerApi(sim, randomToken());
    const body = validBody(image);
    const created = await api.create(body);
    const byExternal = await api.get(body.external_task_id);
    expect(byExternal.status).toBe(200);
    expect(byExternal.body.data.task_id).toBe(created.body.data.task_id);
  });

  it("when the id is unknown or belongs to another account, then the get answers 404 with code 1203", async () => {
    const owner = providerApi(sim, randomToken());
    const body = validBody(image);
    const created = await owner.create(body);
    const stranger = providerApi(sim, randomToken());
    for (const id of [created.body.data.task_id, body.external_task_id, "999999999999999999"]) {
      const answer = await stranger.get(id);
      expect(answer.status).toBe(404);
      expect(answer.body).toMatchObject({ code: 1203, message: "task not found", request_id: expect.any(String) });
    }
  });

  it("when an account lists its tasks, then they come newest first, paged, and only its own", async () => {
    const api = providerApi(sim, randomToken(), "/kling");
    const ids: string[] = [];
    for (let i = 0; i < 3; i += 1) ids.push((await api.create(validBody(image))).body.data.task_id);
    await providerApi(sim, randomToken()).create(validBody(image));

    const all = await api.list();
    expect(all.status).toBe(200);
    expect(all.body.data.map((t: { task_id: string }) => t.task_id)).toEqual([...ids].reverse());
    const page2 = await api.list("?pageNum=2&pageSize=2");
    expect(page2.body.data.map((t: { task_id: string }) => t.task_id)).toEqual([ids[0]]);
  });

  it("when list paging is out of range, then it answers 400 with code 1201", async () => {
    const api = providerApi(sim, randomToken());
    for (const query of ["?pageNum=0", "?pageNum=1001", "?pageSize=0", "?pageSize=501", "?pageSize=abc"]) {
      const answer = await api.list(query);
      expect(answer.status, query).toBe(400);
      expect(answer.body.code, query).toBe(1201);
    }
  });

  it("when the method or path is not a provider route, then it answers 404 with code 1202", async () => {
    const api = providerApi(sim, randomToken());
    const answer = await api.raw(`${sim.url}/v1/images/editing/other`);
    expect(answer.status).toBe(404);
    expect(answer.body.code).toBe(1202);
    const del = await api.raw(`${sim.url}/v1/images/editing/expand/1`, { method: "DELETE" });
    expect(del.status).toBe(404);
    expect(del.body.code).toBe(1202);
  });

  it("when the body is not JSON, then the create answers 400 with code 1200", async () => {
    const api = providerApi(sim, randomToken());
    const answer = await api.raw(`${sim.url}/v1/images/editing/expand`, { method: "POST", body: "{not json" });
    expect(answer.status).toBe(400);
    expect(answer.body.code).toBe(1200);
  });
});
