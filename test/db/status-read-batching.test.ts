import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createAccount } from "../../apps/domain/account/api-key.ts";
import { createDb, type Db } from "../../apps/domain/db/database.ts";
import { getAccountTask } from "../../apps/domain/task/task.repository.ts";
import { cloneDatabase } from "../support/databases.ts";

// Status reads issued together share one statement (task.repository.ts). Reads of two accounts,
// by id and by external id, hits and misses, all issued in one go so they land in the same batch:
// each must get exactly what it would get alone, and never another account's task.

// Both ways statements are sent: unnamed (the default, a transaction-mode pooler) and named
// (DB_PREPARED_STATEMENTS=true).
describe.each([false, true])("status reads that share a statement (prepared statements: %s)", (preparedStatements) => {
  let db: Db;
  const accounts: string[] = [];
  const tasks: { id: string; accountId: string; externalTaskId: string; images: number }[] = [];

  beforeAll(async () => {
    db = createDb(await cloneDatabase(inject("templateDatabaseUrl"), `readbatch${randomUUID().slice(0, 8)}`), { preparedStatements });
    for (const name of ["a", "b"]) accounts.push(await createAccount(db, `batch-${name}`));
    for (const [i, accountId] of [accounts[0], accounts[0], accounts[1], accounts[1]].entries()) {
      const id = randomUUID();
      // The same external id in both accounts: each account must get its own task by it.
      const externalTaskId = `ext-${i % 2}`;
      const images = i;
      await db
        .insertInto("task")
        .values({ id, accountId: accountId!, externalTaskId, status: images > 0 ? "succeeded" : "queued", callbackToken: "t", upRatio: 0.1, downRatio: 0.1, leftRatio: 0.1, rightRatio: 0.1 })
        .execute();
      for (let index = 0; index < images; index++) {
        await db.insertInto("taskImage").values({ taskId: id, index, providerUrl: `https://provider.example/${id}/${index}.png`, storageKey: `k/${id}/${index}` }).execute();
      }
      tasks.push({ id, accountId: accountId!, externalTaskId, images });
    }
  });
  afterAll(async () => {
    await db?.destroy();
  });

  const outcome = (read: Promise<{ id: string; accountId: string; images: unknown[] }>) =>
    read.then(
      (task) => ({ id: task.id, accountId: task.accountId, images: task.images.length }),
      (error: Error) => ({ error: error.message }),
    );

  it("when reads of two accounts by id and by external id are issued at once, then each gets its own task, with its images, or not found", async () => {
    const [a, b] = accounts as [string, string];
    const results = await Promise.all([
      ...tasks.map((t) => outcome(getAccountTask(db, t.accountId, t.id))),
      // Upper-case ids name the same task.
      ...tasks.map((t) => outcome(getAccountTask(db, t.accountId, t.id.toUpperCase()))),
      // Another account's task, by id: not found.
      ...tasks.map((t) => outcome(getAccountTask(db, t.accountId === a ? b : a, t.id))),
      ...tasks.map((t) => outcome(getAccountTask(db, t.accountId, t.externalTaskId, { byExternalId: true }))),
      outcome(getAccountTask(db, a, "ext-none", { byExternalId: true })),
      outcome(getAccountTask(db, a, randomUUID())),
    ]);
    const own = tasks.map((t) => ({ id: t.id, accountId: t.accountId, images: t.images }));
    const missing = (id: string) => ({ error: `task '${id}' not found` });
    expect(results.slice(0, 4)).toEqual(own);
    expect(results.slice(4, 8)).toEqual(own);
    expect(results.slice(8, 12)).toEqual(tasks.map((t) => missing(t.id)));
    expect(results.slice(12, 16)).toEqual(own);
    expect(results[16]).toEqual(missing("ext-none"));
    expect(results[17]).toMatchObject({ error: expect.stringMatching(/not found$/) });
  });

  it("when one read is issued alone, then it is answered the same way", async () => {
    const [t] = tasks;
    // Twice: a named statement is parsed by the first use on a connection and reused by the next.
    expect(await outcome(getAccountTask(db, t!.accountId, t!.id))).toEqual({ id: t!.id, accountId: t!.accountId, images: 0 });
    expect(await outcome(getAccountTask(db, t!.accountId, t!.id))).toEqual({ id: t!.id, accountId: t!.accountId, images: 0 });
    expect(await outcome(getAccountTask(db, accounts[1]!, t!.id))).toEqual({ error: `task '${t!.id}' not found` });
  });
});
