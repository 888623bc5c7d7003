import { randomUUID } from "node:crypto";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createAccountWithKey } from "../../apps/domain/account/api-key.ts";
import type { CreditTerms } from "../../apps/domain/credits/credit-terms.ts";
import { createDb, type Db } from "../../apps/domain/db/database.ts";
import { expandRequestBodySchema } from "../../apps/domain/expand-request/expand-request.schema.ts";
import { acceptTask } from "../../apps/domain/task/accept-task.ts";
import { cloneDatabase, dropDatabases } from "../support/databases.ts";
import { rowsOnlyAcceptDeps } from "./accept-deps.ts";

// The replay window (replay-window.ts) at 0 is off: two identical creates are two tasks however
// their statements interleave. The window is measured back from the statement's now(), its
// transaction's start; an identical create that commits after that start, while this statement
// waits to run (a loaded machine: the provider-faults-capacity test once got 11 tasks for 12
// creates of 3 distinct bodies), has accepted_at > now(), which passed `> now() - 0 s`.
// Here the statement runs in a transaction begun before the other create, so its now() is earlier,
// as a statement held up before its snapshot has; the interleaving is forced, not hoped for.
const suffix = `replayoff${randomUUID().slice(0, 8)}`;
let url: string;
let db: Db;
let other: Db;

beforeAll(async () => {
  url = await cloneDatabase(inject("templateDatabaseUrl"), suffix);
  db = createDb(url, { poolSize: 1 });
  other = createDb(url, { poolSize: 1 });
});
afterAll(async () => {
  await Promise.all([db, other].filter(Boolean).map((d) => d.destroy()));
  if (url) await dropDatabases(url, new URL(url).pathname.slice(1));
});

const terms = (replayWindowSeconds: number): CreditTerms => ({ perImage: 1, defaultCap: undefined, maxRouteCapacity: 8, replayWindowSeconds });

const acceptDeps = (on: Db, replayWindowSeconds: number) => rowsOnlyAcceptDeps(on, terms(replayWindowSeconds));

const body = expandRequestBodySchema.parse({
  image: "https://images.example.com/source.png",
  up_expansion_ratio: 0.1,
  down_expansion_ratio: 0.1,
  left_expansion_ratio: 0.1,
  right_expansion_ratio: 0.1,
  n: 2,
});

// Creates `body` in a transaction whose now() is taken before another connection creates (and
// commits) the same request.
const createAfterAnIdenticalCommit = async (accountId: string, replayWindowSeconds: number) =>
  db.transaction().execute(async (trx) => {
    await sql`select now()`.execute(trx);
    // accepted_at is kept to the millisecond (rounded): the other create starts a clear 2 ms later.
    await sql`select pg_sleep(0.002)`.execute(trx);
    const first = await acceptTask(acceptDeps(other, replayWindowSeconds), accountId, body);
    const second = await acceptTask(acceptDeps(trx, replayWindowSeconds), accountId, body);
    return { first, second };
  });

describe("the replay window at 0", () => {
  it("when an identical create commits after this create's statement began, then this create is a task of its own, not a replay", async () => {
    const { accountId } = await createAccountWithKey(db, `replay-off-${randomUUID().slice(0, 8)}`);
    const { first, second } = await createAfterAnIdenticalCommit(accountId, 0);
    expect(first.replayed).toBe(false);
    expect({ replayed: second.replayed, sameTask: second.task.id === first.task.id }).toEqual({ replayed: false, sameTask: false });
    expect(await db.selectFrom("task").select("id").where("accountId", "=", accountId).execute()).toHaveLength(2);
  });

  it("when the window is on, then the same interleaving is a replay (the heuristic: identical creates within the window are one task)", async () => {
    const { accountId } = await createAccountWithKey(db, `replay-on-${randomUUID().slice(0, 8)}`);
    const { first, second } = await createAfterAnIdenticalCommit(accountId, 60);
    expect({ replayed: second.replayed, sameTask: second.task.id === first.task.id }).toEqual({ replayed: true, sameTask: true });
  });
});
