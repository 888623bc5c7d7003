import { CamelCasePlugin, Kysely, PostgresDialect, type Selectable, type Transaction } from "kysely";
import pg from "pg";
import type { DB } from "./generated/tables.ts";

// Prisma owns the schema and the migrations; the apps query through Kysely on a plain pg pool. Prisma
// 6.19's client compiled every query in WebAssembly on the main thread and reached ~0.05 of raw pg on
// status reads (STACK.md, `npm run bench:api`); Kysely builds SQL in plain JS with types generated
// from schema.prisma (prisma-kysely), so there is no hand-written twin of the schema.

// Prisma stores DateTime as `timestamp(3)` without time zone, in UTC. pg would read and write those
// in the process's local zone; pin both directions to UTC so the two tools agree on every machine.
pg.types.setTypeParser(pg.types.builtins.TIMESTAMP, (value) => new Date(`${value.replace(" ", "T")}Z`));
pg.defaults.parseInputDatesAsUTC = true;

export type Db = Kysely<DB>;
export type Tx = Transaction<DB>;
export type { DB };

export type Task = Selectable<DB["task"]>;
export type TaskImage = Selectable<DB["taskImage"]>;
export type TaskEvent = Selectable<DB["taskEvent"]>;
export type { TaskStatus, EventSource, CallbackOutcome } from "./generated/enums.ts";

export type DbOptions = {
  poolSize?: number;
  // Bounds on a Postgres that is slow or hung (issue: a create hung for 40 s, then committed). The
  // client gives up on a query after queryTimeoutMs (a transaction whose statement timed out is then
  // rolled back, never committed later); the server cancels statements and idle transactions too.
  queryTimeoutMs?: number;
  // A request waits at most this long for a free connection or a new one: then it is a 503.
  connectTimeoutMs?: number;
  applicationName?: string;
};

export const defaultDbTimeouts = { queryTimeoutMs: 10_000, connectTimeoutMs: 3_000 } as const;

export const createDb = (databaseUrl: string, options: DbOptions = {}): Db => {
  const queryTimeoutMs = options.queryTimeoutMs ?? defaultDbTimeouts.queryTimeoutMs;
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: options.poolSize ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? defaultDbTimeouts.connectTimeoutMs,
    query_timeout: queryTimeoutMs,
    statement_timeout: queryTimeoutMs,
    idle_in_transaction_session_timeout: queryTimeoutMs * 2,
    lock_timeout: queryTimeoutMs,
    application_name: options.applicationName ?? "kling-orchestrator",
  });
  // An idle client whose server went away emits 'error' on the pool; without a listener that is an
  // uncaught exception. The next checkout makes a fresh connection.
  pool.on("error", () => undefined);
  return new Kysely<DB>({ dialect: new PostgresDialect({ pool }), plugins: [new CamelCasePlugin()] });
};

// jsonb parameters: pg sends JS arrays as Postgres arrays, so JSON values are always stringified.
export const asJson = (value: unknown): string | null => (value === undefined || value === null ? null : JSON.stringify(value));
