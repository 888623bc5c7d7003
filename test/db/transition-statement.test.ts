import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createAccount } from "../../apps/domain/account/api-key.ts";
import { createDb, type Db, type Task } from "../../apps/domain/db/database.ts";
import { prismaDbOver } from "../../apps/domain/db/prisma-kysely.ts";
import { transitionTask } from "../../apps/domain/task/task-transition.ts";
import { cloneDatabase } from "../support/databases.ts";
import { taskRow } from "../support/rows.ts";

// A single task's transition is compiled once per shape and run with its values swapped in
// (task-transition.ts). Moves of the same shape, issued together on several tasks, must each land
// with their own values; a success's result images are written only when the move applies; an end
// (run in a transaction) lands with its end fields and settles its credits in the same statement; a
// move past submission ends the attempt lease; an archive's stored image is recorded with its
// success. The same on pg (named statements or not) and through Prisma Client
// (CALLBACK_DB_CLIENT=prisma runs the webhook receiver so).
describe.each([
  { executor: "pg", preparedStatements: false },
  { executor: "pg", preparedStatements: true },
  { executor: "prisma", preparedStatements: false },
])("the transition statement, compiled once per shape ($executor, prepared statements: $preparedStatements)", ({ executor, preparedStatements }) => {
  let pgDb: Db;
  let databaseUrl: string;
  let db: Db;
  let accountId: string;
  const changed: Task[] = [];

  beforeAll(async () => {
    databaseUrl = await cloneDatabase(inject("templateDatabaseUrl"), `transition${randomUUID().slice(0, 8)}`);
    pgDb = createDb(databaseUrl, { preparedStatements });
    db = executor === "prisma" ? prismaDbOver(pgDb) : pgDb;
    accountId = await createAccount(db, "transitions");
  });
  afterAll(async () => {
    if (db !== pgDb) await db?.destroy();
    await pgDb?.destroy();
  });

  const newTask = async (status: Task["status"]) => {
    const id = randomUUID();
    await db
      .insertInto("task")
      .values({ id, accountId, status, callbackToken: "t", upRatio: 0.1, downRatio: 0.1, leftRatio: 0.1, rightRatio: 0.1 })
      .execute();
    return id;
  };
  const deps = () => ({ db, taskChanged: (task: Task) => void changed.push(task) });
  const eventsOf = (taskId: string) => db.selectFrom("taskEvent").selectAll().where("taskId", "=", taskId).orderBy("id").execute();
  const imagesOf = (taskId: string) => db.selectFrom("taskImage").select(["index", "providerUrl"]).where("taskId", "=", taskId).orderBy("index").execute();

  it("when moves of one shape run together on several tasks, then each task gets its own values and its own event", async () => {
    const ids = await Promise.all([0, 1, 2, 3, 4].map(() => newTask("queued")));
    const results = await Promise.all(
      ids.map((taskId, i) =>
        transitionTask(deps(), {
          taskId,
          to: "submitting",
          from: ["queued"],
          source: "worker",
          detail: { attempt: i + 1 },
          data: { attempts: i + 1, route: `route-${i}`, waitReason: null, nextCheckAt: new Date(Date.UTC(2030, 0, 1 + i)) },
        }),
      ),
    );
    expect(results.map((r) => r.applied)).toEqual([true, true, true, true, true]);
    for (const [i, taskId] of ids.entries()) {
      const row = await taskRow(db, taskId);
      expect({ status: row.status, attempts: row.attempts, route: row.route, nextCheckAt: row.nextCheckAt?.toISOString() }).toEqual({
        status: "submitting",
        attempts: i + 1,
        route: `route-${i}`,
        nextCheckAt: new Date(Date.UTC(2030, 0, 1 + i)).toISOString(),
      });
      const events = await eventsOf(taskId);
      expect(events.map((e) => ({ from: e.fromStatus, to: e.toStatus, detail: e.detail }))).toEqual([{ from: "queued", to: "submitting", detail: { attempt: i + 1 } }]);
    }
    // What the caller and the live updates are handed is the row as moved, camelCase.
    const handed = results.map((r) => (r.applied ? { id: r.task.id, route: r.task.route, from: r.from } : undefined));
    expect(handed).toEqual(ids.map((id, i) => ({ id, route: `route-${i}`, from: "queued" })));
    expect(changed.filter((t) => (ids as readonly string[]).includes(t.id)).map((t) => t.status)).toEqual(ids.map(() => "submitting"));
  });

  it("when a success brings result images, then they are written with the move, and not at all when the move does not apply", async () => {
    const running = await newTask("processing");
    const ended = await newTask("failed");
    const images = (taskId: string) => [0, 1].map((index) => ({ index, url: `https://provider.example/${taskId}/${index}.png` }));
    const move = (taskId: string) =>
      transitionTask(deps(), { taskId, to: "archiving", from: ["processing"], source: "callback", resultImages: images(taskId) });
    expect((await move(running)).applied).toBe(true);
    expect((await move(ended)).applied).toBe(false);
    expect(await imagesOf(running)).toEqual(images(running).map((i) => ({ index: i.index, providerUrl: i.url })));
    expect(await imagesOf(ended)).toEqual([]);
    expect((await taskRow(db, ended)).status).toBe("failed");
    // The same images again (a repeated report that still moves it) change nothing.
    await db.updateTable("task").set({ status: "processing" }).where("id", "=", running).execute();
    expect((await move(running)).applied).toBe(true);
    expect(await imagesOf(running)).toHaveLength(2);
  });

  it("when a move ends the task (in a transaction, with its credits), then it lands with its end fields", async () => {
    const taskId = await newTask("queued");
    const end = await transitionTask(deps(), { taskId, to: "failed", source: "worker", data: { failureClass: "test", failureMessage: "ended by the test" } });
    expect(end.applied).toBe(true);
    const row = await taskRow(db, taskId);
    expect({ status: row.status, failureClass: row.failureClass, finished: row.finishedAt !== null }).toEqual({ status: "failed", failureClass: "test", finished: true });
  });

  it("when a move takes a task past submission, then its attempt lease ends with it; a move within submission keeps it", async () => {
    const [kept, ended] = [await newTask("queued"), await newTask("submitting")];
    const until = new Date(Date.now() + 60_000);
    await db.updateTable("task").set({ submitLeaseUntil: until }).where("id", "in", [kept, ended]).execute();
    await transitionTask(deps(), { taskId: kept, to: "submitting", from: ["queued"], source: "worker" });
    await transitionTask(deps(), { taskId: ended, to: "submitted", from: ["submitting"], source: "worker", data: { providerTaskId: "p-lease" } });
    expect((await taskRow(db, kept)).submitLeaseUntil).toEqual(until);
    expect((await taskRow(db, ended)).submitLeaseUntil).toBeNull();
  });

  it("when an archive's success carries its stored image, then the image's record lands with the move, and only if it applies", async () => {
    const [moved, stale] = [await newTask("archiving"), await newTask("succeeded")];
    await db.insertInto("taskImage").values([moved, stale].map((taskId) => ({ taskId, index: 0, providerUrl: "http://provider.test/0.png" }))).execute();
    const storedImage = (taskId: string) => ({ index: 0, storageKey: `tasks/${taskId}/0.png`, width: 480, height: 360, bytes: 1234, sha256: "ab".repeat(32) });
    for (const taskId of [moved, stale]) {
      await transitionTask(deps(), { taskId, to: "succeeded", from: ["archiving"], source: "worker", storedImage: storedImage(taskId) });
    }
    const recorded = (taskId: string) =>
      db.selectFrom("taskImage").select(["storageKey", "width", "height", "bytes", "sha256"]).where("taskId", "=", taskId).executeTakeFirstOrThrow();
    const { index: _index, ...fields } = storedImage(moved);
    expect(await recorded(moved)).toEqual(fields);
    expect(await recorded(stale)).toEqual({ storageKey: null, width: null, height: null, bytes: null, sha256: null });
  });

  // The end's statement settles the hold (credit-ledger.ts settleMovedTasksCtes): charged at the
  // end's own final_unit_deduction (a value the statement writes, not one the row had before), the
  // balance moved by the same amounts, and nothing settled by an end that does not apply.
  it("when a move ends a task holding credits, then its statement settles the hold at the end's charge, once", async () => {
    const account = await createAccount(db, `settle-${randomUUID().slice(0, 8)}`);
    const held = async (n: number) => {
      const id = randomUUID();
      await db.insertInto("task").values({ id, accountId: account, status: "archiving", callbackToken: "t", n, upRatio: 0.1, downRatio: 0.1, leftRatio: 0.1, rightRatio: 0.1 }).execute();
      await db.insertInto("creditEntry").values({ accountId: account, taskId: id, reserved: String(n) }).execute();
      return id;
    };
    await db.insertInto("creditBalance").values({ accountId: account, reserved: "5" }).execute();
    const [charged, released] = [await held(3), await held(2)];
    expect((await transitionTask(deps(), { taskId: charged, to: "succeeded", from: ["archiving"], source: "worker", data: { finalUnitDeduction: "2" } })).applied).toBe(true);
    expect((await transitionTask(deps(), { taskId: released, to: "failed", from: ["archiving"], source: "worker", data: { failureClass: "test" } })).applied).toBe(true);
    // Not applied (already ended): no second settlement.
    expect((await transitionTask(deps(), { taskId: charged, to: "failed", from: ["archiving"], source: "worker" })).applied).toBe(false);
    const entries = await db.selectFrom("creditEntry").select(["taskId", "state", "settled"]).where("accountId", "=", account).execute();
    expect(new Map(entries.map((e) => [e.taskId, { state: e.state, settled: Number(e.settled) }]))).toEqual(
      new Map([
        [charged, { state: "settled", settled: 2 }],
        [released, { state: "released", settled: 0 }],
      ]),
    );
    const balance = await db.selectFrom("creditBalance").select(["spent", "reserved"]).where("accountId", "=", account).executeTakeFirstOrThrow();
    expect({ spent: Number(balance.spent), reserved: Number(balance.reserved) }).toEqual({ spent: 2, reserved: 0 });
  });
});
