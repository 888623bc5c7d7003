import { randomUUID } from "node:crypto";
import { sql } from "kysely";
import { inject } from "vitest";
import { createDb, type Db } from "../../apps/domain/db/database.ts";
import { cloneDatabase, dropDatabases } from "../support/databases.ts";
import { eventually } from "../support/fault-kit.ts";

// Interleavings forced step by step on separate connections: each actor gets a one-connection pool
// with its own application_name, so the observer can see in pg_stat_activity which of them waits for
// a lock. `open` clones the template; `close` ends the pools and drops the copy.
export const lockSteps = <Name extends string>(prefix: string, actors: readonly Name[]) => {
  const state = { url: "", observer: undefined as Db | undefined, pools: new Map<Name, Db>() };
  const open = async () => {
    state.url = await cloneDatabase(inject("templateDatabaseUrl"), `${prefix}${randomUUID().slice(0, 8)}`);
    state.observer = createDb(state.url, { poolSize: 2 });
    for (const name of actors) state.pools.set(name, createDb(state.url, { poolSize: 1, applicationName: name }));
  };
  const close = async () => {
    await Promise.all([state.observer, ...state.pools.values()].filter((db): db is Db => Boolean(db)).map((db) => db.destroy()));
    if (state.url) await dropDatabases(state.url, new URL(state.url).pathname.slice(1));
  };
  const observer = () => state.observer!;
  const actor = (name: Name) => state.pools.get(name)!;
  // Until the named connection waits for a lock, or its work is done (the order under test may let
  // it through at once).
  const waitsOrDone = (name: Name, run: { state: { done: boolean } }) =>
    eventually(`${name} waiting for a lock or done`, async () => {
      if (run.state.done) return true;
      const { rows } = await sql<{ waiting: boolean }>`
        select exists (select 1 from pg_stat_activity where datname = current_database() and application_name = ${name} and wait_event_type = 'Lock') as waiting`.execute(observer());
      return rows[0]!.waiting ? true : undefined;
    }, 10_000, 10);
  return { open, close, observer, actor, url: () => state.url, waitsOrDone };
};

// Work begun now, whose end the steps can see without awaiting it.
export const started = <T>(work: () => Promise<T>) => {
  const state = { done: false };
  const promise = work().finally(() => (state.done = true));
  return { state, promise };
};
