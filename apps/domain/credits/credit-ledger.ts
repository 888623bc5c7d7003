import { sql, type RawBuilder } from "kysely";
import type { Db, Tx } from "../db/database.ts";
import { AppError } from "../errors/app-error.ts";

// The credit ledger: the one home of money (docs/money.md).
//
// credit_entry: one row per task and run (a retried task runs, and may be charged, again): the
// credits held at intake (`reserved`), then `settled` from the provider's final_unit_deduction when
// the task ends, or `released` when it ended uncharged; `refunded` reverses a settlement.
// credit_balance: one row per account, the running sums of its entries (reserved: open holds; spent:
// settlements), with credit_hold_stripe: holds without a cap are added to one of a few stripe rows
// instead (HOLD_STRIPES), and the account's reserved is the balance row's plus its stripes' (the
// balance row's alone goes below zero as settlements take those holds back from it). Every change
// of an entry's state changes the balance in the same statement, so the balance always equals the
// sum over the entries (test/credits/ledger-property.test.ts).
//
// The cap: the account's spend_cap_credits, else the installation's default (BATCH_SPEND_CAP_CREDITS);
// none: no cap. A reservation is a conditional update of the balance row (spent + reserved + new <=
// cap, evaluated under the row's lock), never a read followed by an insert: concurrent intakes in any
// number of processes cannot pass the cap together.

export type CreditCap = number | undefined;

// The provider's final_unit_deduction as credits: the one place its text is read.
export const chargedCreditsSql = (finalUnitDeduction: RawBuilder<unknown>) =>
  sql<string>`case when ${finalUnitDeduction} ~ '^[0-9]+(\\.[0-9]+)?$' then (${finalUnitDeduction})::numeric end`;

const capSql = (accountId: string, defaultCap: CreditCap) =>
  sql<string | null>`coalesce((select spend_cap_credits from account where id = ${accountId}::uuid)::numeric, ${defaultCap ?? null}::numeric)`;

// Lock order. Every transaction that writes task rows and the balance row writes the tasks first
// and takes the balance last: an end (single, or a bulk cancel's chunk) moves its tasks, then
// settles; a batch retry moves its tasks, reopens the batch, then holds (reserveCredits); an atomic
// batch writes its tasks, then holds; an intake statement (a single create, a batch chunk) inserts
// its tasks, then holds (holdCreditsCtes). A writer of a task row (a move's row lock, or an insert's
// unique check, which waits for another transaction writing the same id or (account,
// external_task_id)) therefore never holds the balance lock while it waits. The other order, hold
// then insert, deadlocked (40P01) against a retry or an end of the task the insert collided with:
// the retry held the task row and waited for the balance, the create held the balance and waited
// for the retry's commit to know whether its insert was unique (test/credits/ledger-lock-order).
// The batch row, where one is locked, comes before the balance too (an upload chunk renews its
// lease first; a retry reopens its batch before it holds). Paths that take the balance without any
// task row (a refund, the sweep's settlement) lock credit entries, which no task writer waits for
// while holding the balance; the sweep takes its accounts' balance rows in account order.

// An account's holds without a cap are spread over this many rows (credit_hold_stripe), so that
// concurrent intakes of one account do not queue on one row lock: an update's lock is held until
// its commit, and the commit waits for the WAL flush, so one balance row serialised an account's
// creates at one flush each (16 of 30 samples of the API's connections waited on it in
// `npm run bench:api`'s URL intake). With a cap, every hold takes the balance row as before: the
// cap's check needs the one lock.
export const HOLD_STRIPES = 32;

// The account's reserved credits held on stripes: a statement's snapshot of them. Only holds without
// a cap write stripes, and settlements never do, so a capped check can only overestimate with it.
const stripedSql = (accountId: string) => sql<string>`coalesce((select sum(reserved) from credit_hold_stripe where account_id = ${accountId}::uuid), 0)`;

// The hold of the tasks in `written` on one of the account's stripes, chosen at random, where `when`.
const stripeHoldSql = (written: string, accountId: string, perImage: number, when: RawBuilder<boolean>) =>
  sql<{ accountId: string }>`(
    insert into credit_hold_stripe as s (account_id, stripe, reserved)
    select ${accountId}::uuid, floor(random() * ${HOLD_STRIPES}::int)::smallint, w.credits
    from (select coalesce(sum(n), 0) * ${perImage}::numeric as credits from ${sql.table(written)} having count(*) > 0) w
    where ${when}
    on conflict (account_id, stripe) do update
      set reserved = s.reserved + excluded.reserved, updated_at = now()
    returning s.account_id)`;

// The CTEs for an intake statement, written in this order after the CTE that inserts its tasks
// (`written`, whose rows carry each task's `n`), under these names (`held` reads the other two):
// they hold n x perImage credits for the tasks if they fit under the account's cap, and `held`
// returns the account id only then. Each reads every row of `written`, so all its inserts (and
// their unique checks) are done before a balance row is locked (the lock order above). The credit
// entries take their account_id from `held` (heldAccountSql), so a refused hold makes the whole
// statement fail (not-null violation on credit_entry.account_id, see isCapRefusal) and nothing is
// written: the hold and the tasks exist together or not at all. No task written (an insert that did
// nothing on conflict): nothing is held, and there is no entry to fail.
// - held_capped: with a cap, the conditional update of the balance row (spent + reserved, stripes
//   included, + new <= cap, under the row's lock). Without one it only creates the account's
//   balance row at its first hold (reserved 0: settlements take from that row), and locks nothing
//   once the row exists.
// - held_open: without a cap, the hold on one of the account's stripes, chosen at random.
// An account's cap that is set while holds without one are in flight may miss those that commit
// after its check's snapshot (as a cap read by the statement's snapshot did before the stripes).
// The single create's hold is the same SQL written out in intake_task (a PL/pgSQL function, for its
// cached plans: prisma/migrations/20261208020000_intake_function_once, its latest text), with one
// more statement before it for an account without a cap (the stripe upsert alone): a change of the
// hold here is a change there too, by a new migration.
export const holdCreditsCtes = (written: string, accountId: string, perImage: number, defaultCap: CreditCap) => {
  const cap = capSql(accountId, defaultCap);
  const striped = stripedSql(accountId);
  const wanted = sql`(select coalesce(sum(n), 0) * ${perImage}::numeric as credits from ${sql.table(written)} having count(*) > 0) w`;
  // Kysely puts a raw CTE body in the statement as it is: the parentheses are the CTE's own.
  return {
    held_capped: sql<{ accountId: string }>`(
    insert into credit_balance as b (account_id, reserved)
    select ${accountId}::uuid, case when ${cap} is null then 0 else w.credits end
    from ${wanted}
    where case when ${cap} is null then not exists (select 1 from credit_balance where account_id = ${accountId}::uuid)
               else w.credits + ${striped} <= ${cap} end
    on conflict (account_id) do update
      set reserved = b.reserved + excluded.reserved, updated_at = now()
      where ${cap} is not null and b.spent + b.reserved + ${striped} + excluded.reserved <= ${cap}
    returning b.account_id)`,
    held_open: stripeHoldSql(written, accountId, perImage, sql<boolean>`${cap} is null`),
    // Without a cap, an account's first hold returns its id from both: `union` keeps one.
    held: sql<{ accountId: string }>`(select account_id from held_capped union select account_id from held_open)`,
  };
};

// The account_id of a hold made by holdCreditsCtes named `held`, for its credit entries: null (and
// the statement failed) when the hold was refused.
export const heldAccountSql = (held: string) => sql<string>`(select account_id from ${sql.table(held)})`;

// The statement failed because holdCreditsCtes refused the credits.
export const isCapRefusal = (error: unknown) => {
  const e = error as { code?: unknown; column?: unknown; table?: unknown } | null;
  return typeof e === "object" && e !== null && e.code === "23502" && e.column === "account_id" && e.table === "credit_entry";
};

export type AccountBalance = { spent: number; reserved: number; cap: CreditCap };

export const accountBalance = async (db: Db | Tx, accountId: string, defaultCap: CreditCap): Promise<AccountBalance> => {
  const row = await sql<{ spent: string | null; reserved: string | null; cap: string | null }>`
    select b.spent, coalesce(b.reserved, 0) + ${stripedSql(accountId)} as reserved, ${capSql(accountId, defaultCap)} as cap
    from (select 1) one left join credit_balance b on b.account_id = ${accountId}::uuid`.execute(db);
  const r = row.rows[0]!;
  return { spent: Number(r.spent ?? 0), reserved: Number(r.reserved ?? 0), cap: r.cap === null ? undefined : Number(r.cap) };
};

export const spendCapError = (balance: AccountBalance, credits: number, what: string) =>
  new AppError(
    "spend_cap_exceeded",
    `${what} needs ${credits} credits; the account has ${balance.spent} spent and ${balance.reserved} reserved against its spend cap of ${balance.cap} credits; nothing was created`,
  );

// The balance row locked for the rest of the transaction (created if missing): a retry or an atomic
// batch decides whether its holds fit, then adds them (addHeld). Taken after the transaction's task
// rows (the lock order above).
export const lockBalance = async (tx: Tx, accountId: string, defaultCap: CreditCap): Promise<AccountBalance> => {
  await sql`insert into credit_balance (account_id) values (${accountId}::uuid) on conflict do nothing`.execute(tx);
  await sql`select 1 from credit_balance where account_id = ${accountId}::uuid for update`.execute(tx);
  return accountBalance(tx, accountId, defaultCap);
};

// Adds `credits` to a balance locked by lockBalance (already checked against the cap there).
export const addHeld = async (tx: Tx, accountId: string, credits: number) => {
  if (credits === 0) return;
  await sql`update credit_balance set reserved = reserved + ${credits}::numeric, updated_at = now() where account_id = ${accountId}::uuid`.execute(tx);
};

// Holds credits for tasks that run again (a retry): all of them fit under the cap, or none is held
// (false). Runs in the caller's transaction, the one that moves the tasks back to work: a task is
// never running again without its hold, nor holding for a run it does not make. Tasks that already
// hold credits are left as they are.
export const reserveCredits = async (tx: Tx, accountId: string, defaultCap: CreditCap, tasks: readonly { taskId: string; credits: number }[]) => {
  if (tasks.length === 0) return true;
  const balance = await lockBalance(tx, accountId, defaultCap);
  const open = await tx.selectFrom("creditEntry").select("taskId").where("taskId", "in", tasks.map((t) => t.taskId)).where("state", "=", "reserved").execute();
  const held = new Set(open.map((o) => o.taskId));
  const fresh = tasks.filter((t) => !held.has(t.taskId));
  const total = fresh.reduce((sum, t) => sum + t.credits, 0);
  if (balance.cap !== undefined && balance.spent + balance.reserved + total > balance.cap) return false;
  if (fresh.length === 0) return true;
  const inserted = await sql<{ reserved: string }>`
    insert into credit_entry (account_id, task_id, batch_id, reserved)
    select t.account_id, t.id, t.batch_id, v.credits
    from unnest(${fresh.map((t) => t.taskId)}::uuid[], ${fresh.map((t) => t.credits)}::numeric[]) as v(task_id, credits)
    join task t on t.id = v.task_id and t.account_id = ${accountId}::uuid
    returning reserved`.execute(tx);
  await addHeld(tx, accountId, inserted.rows.reduce((sum, r) => sum + Number(r.reserved), 0));
  return true;
};

// Settles the open holds of tasks that have ended, for any number of tasks at once (one statement):
// charged at the provider's final_unit_deduction, or at the hold when a succeeded task's report
// named none; released when nothing was charged (failed or canceled before the provider ran it).
// The entry keeps the route that ran the task, its price then and the cost at that price (price x n).
// Idempotent: an entry settles once (its row lock and state guard), so every end may call it, and
// the sweep calls it for whatever a crash left open (settleEndedCredits).
export const settleCredits = async (db: Db | Tx, taskIds: readonly string[]) => {
  if (taskIds.length === 0) return 0;
  return settleWhere(db, sql`e.task_id = any(${[...taskIds]}::uuid[])`, taskIds.length * 2);
};

// Whatever ended without being settled (a process died between a task's end and its settlement), and
// holds whose task no longer exists (deleted with its batch or by retention: released).
export const settleEndedCredits = async (db: Db, limit = 1_000) => settleWhere(db, sql`true`, limit);

// One settlement, whichever statement runs it: the entries of ended tasks (`tasks`: a relation with
// the task's columns, as `t`), charged or released, and the balance moved by their sums.
// `ended`: the statement's snapshot may show a task ended that a retry is moving back to work (its
// transaction holds the task row and has found this entry open, so it holds nothing more: the
// entry is the new run's hold), or has just moved and committed. Settling it then left a queued task
// with no open entry (test/credits/ledger-retry-race.test.ts). A settlement that does not move the
// task itself (`lockTasks`: the sweep, settleCredits) therefore takes the task row's share lock and
// reads its status again under it: a row a writer holds is skipped (the next sweep sees it), a row
// changed since the snapshot is read as it is now, and a retry waits for the settlement's commit
// before it looks for open entries, so it holds anew. Lock order: task, entries, balance.
const settlementCtes = (tasks: RawBuilder<unknown>, filter: RawBuilder<unknown>, limit: number | null, names: { ended: string; done: string; locked: string }, lockTasks: boolean) => ({
  ended: sql<Record<string, unknown>>`(
      select e.id, e.account_id, e.reserved,
        coalesce(${chargedCreditsSql(sql`t.final_unit_deduction`)}, case when t.status = 'succeeded' then e.reserved else 0 end) as charged,
        t.route, t.unit_price, t.n
      from credit_entry e left join ${tasks} t on t.id = e.task_id
      where ${filter} and e.state = 'reserved' and (t.id is null or (t.status in ('succeeded', 'failed', 'canceled')${
        lockTasks ? sql` and exists (select 1 from task l where l.id = t.id and l.status in ('succeeded', 'failed', 'canceled') for share skip locked)` : sql``
      }))
      order by e.id
      ${limit === null ? sql`` : sql`limit ${limit}`}
      for update of e skip locked)`,
  done: sql<Record<string, unknown>>`(
      update credit_entry e
      set state = case when ended.charged > 0 then 'settled'::credit_state else 'released'::credit_state end,
          settled = ended.charged, route = ended.route, unit_price = ended.unit_price,
          cost = case when ended.charged > 0 then ended.unit_price * ended.n end, settled_at = now()
      from ${sql.table(names.ended)} ended where e.id = ended.id
      returning e.account_id, ended.reserved, ended.charged)`,
  // The sweep settles entries of many accounts at once: their balance rows are locked in account
  // order, so two sweeps (one per worker) never take two of them in opposite orders.
  locked: sql<Record<string, unknown>>`(
      select b.account_id from credit_balance b
      where b.account_id in (select account_id from ${sql.table(names.done)})
      order by b.account_id
      for update of b)`,
  balance: sql<Record<string, unknown>>`(
      update credit_balance b
      set reserved = b.reserved - s.reserved, spent = b.spent + s.charged, updated_at = now()
      from (select account_id, sum(reserved) as reserved, sum(charged) as charged from ${sql.table(names.done)} group by account_id) s
      join ${sql.table(names.locked)} l on l.account_id = s.account_id
      where b.account_id = s.account_id
      returning b.account_id)`,
});

const settleWhere = async (db: Db | Tx, filter: RawBuilder<unknown>, limit: number) => {
  const ctes = settlementCtes(sql`task`, filter, limit, { ended: "ended", done: "done", locked: "locked" }, true);
  const result = await sql<{ settled: string }>`
    with ended as ${ctes.ended}, done as ${ctes.done}, locked as ${ctes.locked}, moved as ${ctes.balance}
    select count(*)::text as settled from done`.execute(db);
  return Number(result.rows[0]?.settled ?? 0);
};

// The settlement of the tasks a move ends, as CTEs of the move's own statement (task-transition.ts):
// `moved` names its CTE of the moved rows, which carry the end (the statement's snapshot of `task`
// still shows the tasks running). An end and its settlement are one round trip and commit together;
// the move's row lock comes first (the entries read `moved`), then the entries, then the balance.
// Keyed by the CTE names they take, written in this order (each reads the one before).
export const settleMovedTasksCtes = (moved: string) => {
  const ctes = settlementCtes(sql.table(moved), sql`e.task_id in (select id from ${sql.table(moved)})`, null, { ended: "settle_ended", done: "settle_done", locked: "settle_locked" }, false);
  return { settle_ended: ctes.ended, settle_done: ctes.done, settle_locked: ctes.locked, settle_balance: ctes.balance };
};

// Reverses a settlement (the provider refunded the task; an operator's correction): the entry is
// `refunded` and its credits leave the account's spent. Returns the credits refunded (0: nothing was
// settled for the task).
export const refundCredits = async (db: Db | Tx, taskId: string) => {
  const result = await sql<{ refunded: string | null }>`
    with picked as (
      select id from credit_entry where task_id = ${taskId}::uuid and state = 'settled' order by id for update
    ),
    done as (
      update credit_entry e set state = 'refunded'::credit_state from picked where e.id = picked.id
      returning e.account_id, e.settled
    ),
    moved as (
      update credit_balance b set spent = b.spent - s.settled, updated_at = now()
      from (select account_id, sum(settled) as settled from done group by account_id) s
      where b.account_id = s.account_id
      returning b.account_id
    )
    select sum(settled)::text as refunded from done`.execute(db);
  return Number(result.rows[0]?.refunded ?? 0);
};
