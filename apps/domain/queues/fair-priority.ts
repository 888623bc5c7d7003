import { randomUUID } from "node:crypto";
import type { RedisClient } from "./redis-connection.ts";
import { redisScript } from "./redis-scripts.ts";

// Fairness between accounts without serialising intake: an account's k-th waiting task is enqueued
// with BullMQ priority k (lower runs sooner), so a single interactive task overtakes a bulk backlog
// and accounts sharing the provider take turns. The count per account lives in one Redis hash and
// only grows at intake; the sweeper sets it back to the true number of queued tasks from Postgres
// every few seconds (resync), so tasks that left the queue are forgotten without bookkeeping on
// every path that moves a task on.
//
// Batch items count in a hash of their own and queue behind single tasks: an account's k-th waiting
// batch item has priority BATCH_PRIORITY_BASE + k. A single task (of any account) overtakes every
// batch, and two accounts' batches take turns item by item. A chunk of items takes its range of
// priorities with one command, not one per item.
//
// Intake takes its priority before it writes the task's row (the job goes first: accept-task.ts),
// so Postgres alone undercounts an account in the middle of a burst; a resync that set the count
// to the rows restarted the account's numbering near 1, and its later tasks tied or passed another
// account's single task. So a resync never forgets an intake that has its priority:
// - intake marks its tasks in flight with the same script that takes the priority (fair-take.lua)
//   and unmarks them once its rows are committed or will not be (settle: carried by the next take,
//   or one command for all the settles of a turn of the event loop);
// - resync reads the counts and the marks in one MULTI (the snapshot) before it reads Postgres,
//   then sets each count to rows + marks at the snapshot + what was taken since the snapshot
//   (fair-resync.lua, one script, so nothing taken meanwhile is lost).
// Each intake is counted: taken after the snapshot, by "since"; taken before and unsettled at the
// snapshot, by its mark; settled before the snapshot, its row was committed before the read of
// Postgres began, so the read counts it while it is queued. An intake counted twice (its mark and
// its row, or "since" and its row) only places its account one further back until the next resync;
// tasks that left the queue are forgotten at the next resync, so the counts stay near the queue's
// length (task-queues.ts clamps a priority to BullMQ's largest anyway).
// A mark carries a deadline from Redis' clock (TIME, in the scripts: API and worker machines disagree
// by seconds), so an API that dies mid-intake does not pin its account's count: past IN_FLIGHT_MS
// (far longer than an intake's statements) the next snapshot reaps it.
export const BATCH_PRIORITY_BASE = 10_000;

export const FAIR_TAG = "{fair}";

const IN_FLIGHT_MS = 5 * 60_000;

type Counts = ReadonlyMap<string, number>;
// Intake's in-flight mark goes: call once the rows are committed, or will not be.
export type SettleIntake = () => Promise<void>;
export type IntakePriority = { priority: number; settle: SettleIntake };

export type FairPriority = {
  // For a task whose row is already written (a re-driven job): nothing to mark in flight.
  next(accountId: string): Promise<number>;
  // The first of `count` consecutive priorities for an account's batch items (rows written).
  nextBatchRange(accountId: string, count: number): Promise<number>;
  // Intake, before its row is written.
  take(accountId: string): Promise<IntakePriority>;
  // Intake of `count` batch items: `priority` is the first of their consecutive priorities.
  takeBatchRange(accountId: string, count: number): Promise<IntakePriority>;
  // Resync in two steps around the read of the queued rows: snapshot first, then apply the rows.
  beginResync(): Promise<(queuedByAccount: Counts, batchQueuedByAccount: Counts) => Promise<void>>;
};

const scriptFile = (name: string) => new URL(`./scripts/${name}.lua`, import.meta.url);
const withMarks = (name: string) => [scriptFile("fair-marks.lib"), scriptFile(name)];
const takeScript = { name: "fair-take", numberOfKeys: 3, files: withMarks("fair-take") };
const settleScript = { name: "fair-settle", numberOfKeys: 2, files: withMarks("fair-settle") };
const snapshotScript = { name: "fair-snapshot", numberOfKeys: 7, files: withMarks("fair-snapshot") };
const resyncScript = { name: "fair-resync", numberOfKeys: 3, files: [scriptFile("fair-resync")] };

type Deferred = { promise: Promise<void>; resolve: () => void; reject: (error: unknown) => void };
const deferredOf = (): Deferred => {
  let resolve!: () => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A settle nobody awaits (intake's, not awaited) must not be an unhandled rejection.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
};

// HGETALL as a script returns it: a flat [field, value, ...] list.
const hashOf = (flat: unknown) => {
  const map = new Map<string, number>();
  const list = Array.isArray(flat) ? (flat as string[]) : [];
  for (let i = 0; i + 1 < list.length; i += 2) map.set(list[i]!, Number(list[i + 1]));
  return map;
};

export const createFairPriority = (redis: RedisClient, prefix: string): FairPriority => {
  // One hash tag for all: each script touches several of them at once, which a cluster allows in one
  // slot.
  const base = `${prefix}:${FAIR_TAG}`;
  const keys = {
    single: { counts: `${base}:queued-by-account`, marks: `${base}:in-flight`, deadlines: `${base}:in-flight-deadlines` },
    batch: { counts: `${base}:batch-queued-by-account`, marks: `${base}:batch-in-flight`, deadlines: `${base}:batch-in-flight-deadlines` },
  };
  const epochKey = `${base}:resync-epoch`;
  const take = redisScript(redis, takeScript);
  const settle = redisScript(redis, settleScript);
  const snapshot = redisScript(redis, snapshotScript);
  const resync = redisScript(redis, resyncScript);

  // Settles wait for a command to ride on: the next take of the same kind carries them (a
  // create's settle then costs no command of its own while creates keep coming), or else one
  // settle command takes all that are waiting once the event loop has run this turn's I/O. A mark
  // settled a little late only counts its task twice at a resync in between (above).
  const waiting = { single: new Map<string, Deferred>(), batch: new Map<string, Deferred>() };
  const flushes = { single: false, batch: false };
  const sendSettles = (kind: keyof typeof keys, run: (members: string[]) => Promise<unknown>) => {
    const batch = waiting[kind];
    if (batch.size === 0) return undefined;
    waiting[kind] = new Map();
    const members = [...batch.keys()];
    // The command's failure reaches both the settles it carried and its caller (a take that failed
    // must not answer a priority it never got).
    return run(members).then(
      () => batch.forEach((d) => d.resolve()),
      (error: unknown) => {
        batch.forEach((d) => d.reject(error));
        throw error;
      },
    );
  };
  const flush = (kind: keyof typeof keys) => {
    flushes[kind] = false;
    const { marks, deadlines } = keys[kind];
    // Its failure is each waiting settle's (their deferreds), not this turn's.
    sendSettles(kind, (members) => settle([marks, deadlines], members))?.catch(() => undefined);
  };
  const settleLater = (kind: keyof typeof keys, member: string) => {
    const deferred = deferredOf();
    waiting[kind].set(member, deferred);
    if (!flushes[kind]) {
      flushes[kind] = true;
      setImmediate(flush, kind);
    }
    return deferred.promise;
  };

  const takeFor = async (kind: keyof typeof keys, accountId: string, count: number) => {
    const { counts, marks, deadlines } = keys[kind];
    const nonce = randomUUID();
    let last = 0;
    const sent = sendSettles(kind, async (members) => {
      last = Number(await take([counts, marks, deadlines], [accountId, count, IN_FLIGHT_MS, nonce, ...members]));
    });
    if (sent) await sent;
    else last = Number(await take([counts, marks, deadlines], [accountId, count, IN_FLIGHT_MS, nonce]));
    const member = `${count} ${nonce} ${accountId}`;
    let settled: Promise<void> | undefined;
    return { first: last - count + 1, settle: () => (settled ??= settleLater(kind, member)) };
  };

  return {
    next: (accountId) => redis.hincrby(keys.single.counts, accountId, 1),
    nextBatchRange: async (accountId, count) => BATCH_PRIORITY_BASE + (await redis.hincrby(keys.batch.counts, accountId, count)) - count + 1,
    take: async (accountId) => {
      const { first, settle } = await takeFor("single", accountId, 1);
      return { priority: first, settle };
    },
    takeBatchRange: async (accountId, count) => {
      const { first, settle } = await takeFor("batch", accountId, count);
      return { priority: BATCH_PRIORITY_BASE + first, settle };
    },
    beginResync: async () => {
      const { single: s, batch: b } = keys;
      const [epoch, single, batch, singleMarks, batchMarks] = (await snapshot(
        [epochKey, s.counts, b.counts, s.marks, s.deadlines, b.marks, b.deadlines],
        [],
      )) as [string, unknown, unknown, unknown, unknown];
      const seen = { single: hashOf(single), batch: hashOf(batch) };
      const marked = { single: hashOf(singleMarks), batch: hashOf(batchMarks) };
      return async (queuedByAccount, batchQueuedByAccount) => {
        const planOf = (rows: Counts, kind: keyof typeof keys) => {
          const plan = new Map(rows);
          for (const [account, n] of marked[kind]) plan.set(account, (plan.get(account) ?? 0) + n);
          return { base: Object.fromEntries(plan), seen: Object.fromEntries(seen[kind]) };
        };
        const plan = { single: planOf(queuedByAccount, "single"), batch: planOf(batchQueuedByAccount, "batch") };
        await resync([keys.single.counts, keys.batch.counts, epochKey], [epoch, JSON.stringify(plan)]);
      };
    },
  };
};
