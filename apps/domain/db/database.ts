import { createHash } from "node:crypto";
import { CamelCasePlugin, CompiledQuery, Kysely, PostgresDialect, PostgresDriver, type DatabaseConnection, type Selectable, type Transaction, type TransactionSettings } from "kysely";
import type { PostgresCursor, PostgresPool, PostgresPoolClient, PostgresQueryResult } from "kysely";
import pg from "pg";
import type { DB } from "./generated/tables.ts";

// Prisma owns the schema and the migrations; the apps query through Kysely on a plain pg pool. Prisma
// 6.19's client compiled every query in WebAssembly on the main thread and reached ~0.05 of raw pg on
// status reads (STACK.md, `npm run bench:api`); Kysely builds SQL in plain JS with types generated
// from schema.prisma (prisma-kysely), so there is no hand-written twin of the schema. The webhook
// receiver's same SQL through Prisma Client (prisma-kysely.ts) still served only ~half the callbacks
// per API core (2026-12-07, docs/benchmarks.md).

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
  // rolled back, never committed later); the server cancels a transaction's statements, lock waits
  // and idleness too.
  queryTimeoutMs?: number;
  // A request waits at most this long for a free connection or a new one: then it is a 503.
  connectTimeoutMs?: number;
  applicationName?: string;
  // Named (server-side) prepared statements: parsed once per connection. Off by default because a
  // pooler in transaction mode (PgBouncer before 1.21) hands the next transaction another server
  // connection, where the name does not exist.
  preparedStatements?: boolean;
};

export const defaultDbTimeouts = { queryTimeoutMs: 10_000, connectTimeoutMs: 3_000 } as const;

// The client-side bound comes this much after the server's: a live server cancels a transaction's
// statement first (57014, rolled back for sure, the connection kept); the client's is the backstop
// for a server or path that went silent.
const CLIENT_TIMEOUT_GRACE_MS = 1_000;

// Server-side deadlines, set per transaction. They used to be connection options (startup
// parameters), which PgBouncer in transaction mode refuses ("unsupported startup parameter") and
// which, were they ignored, would vanish silently. `set local` lives and dies with its transaction,
// so no session state is left on a pooled server connection for the next client.
const transactionDeadlines = (queryTimeoutMs: number) =>
  [
    `set local statement_timeout = ${queryTimeoutMs}`,
    `set local lock_timeout = ${queryTimeoutMs}`,
    `set local idle_in_transaction_session_timeout = ${queryTimeoutMs * 2}`,
  ].join("; ");

// What bounds a transaction, for an executor that is not Kysely's own (prisma-kysely.ts): the same
// `set local` deadlines, a wait for a connection, and a life no longer than the server would allow.
export const transactionBounds = (queryTimeoutMs: number, connectTimeoutMs: number) => ({
  deadlines: transactionDeadlines(queryTimeoutMs),
  connectTimeoutMs,
  transactionTimeoutMs: queryTimeoutMs * 2 + CLIENT_TIMEOUT_GRACE_MS,
});

// Kysely's own begin, with the deadlines in the same round trip (a parameterless query goes as a
// simple query, which may hold several statements).
class DeadlineDriver extends PostgresDriver {
  constructor(
    config: ConstructorParameters<typeof PostgresDriver>[0],
    private readonly deadlines: string,
  ) {
    super(config);
  }
  override async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    let begin = "begin";
    if (settings.isolationLevel || settings.accessMode) {
      begin = ["start transaction", settings.isolationLevel && `isolation level ${settings.isolationLevel}`, settings.accessMode].filter(Boolean).join(" ");
    }
    await connection.executeQuery(CompiledQuery.raw(`${begin}; ${this.deadlines}`));
  }
}

const isClientTimeout = (error: unknown) => error instanceof Error && /Query read timeout/.test(error.message);

const statementName = (sql: string) => `k_${createHash("sha1").update(sql).digest("base64url").slice(0, 24)}`;

// The pool as Kysely sees it. A statement outside a transaction has no server-side deadline (a
// pooler forbids a session-wide one): its bound is pg's client-side query_timeout, after which the
// connection is thrown away rather than handed to the next query, which would queue behind the
// abandoned one. With preparedStatements, parameterised statements are sent named.
const poolFor = (pool: pg.Pool, preparedStatements: boolean): PostgresPool => ({
  end: () => pool.end(),
  connect: async (): Promise<PostgresPoolClient> => {
    const client = await pool.connect();
    let broken = false;
    function query<R>(sql: string, parameters: ReadonlyArray<unknown>): Promise<PostgresQueryResult<R>>;
    function query<R>(cursor: PostgresCursor<R>): PostgresCursor<R>;
    function query<R>(sqlOrCursor: string | PostgresCursor<R>, parameters?: ReadonlyArray<unknown>): Promise<PostgresQueryResult<R>> | PostgresCursor<R> {
      if (typeof sqlOrCursor !== "string") return client.query(sqlOrCursor as never) as PostgresCursor<R>;
      const values = [...(parameters ?? [])];
      const config: pg.QueryConfig = preparedStatements && values.length > 0 ? { text: sqlOrCursor, values, name: statementName(sqlOrCursor) } : { text: sqlOrCursor, values };
      return (client.query(config) as unknown as Promise<PostgresQueryResult<R>>).catch((error: unknown) => {
        if (isClientTimeout(error)) broken = true;
        throw error;
      });
    }
    return { query, release: (destroy?: boolean) => client.release(destroy || broken) };
  },
});

// Result rows arrive snake_case and are handed out camelCase, by Kysely's plugin on its own path
// and by the same plugin's mapRow on the direct one below: one mapping, whichever path a row took.
class RowCamelCase extends CamelCasePlugin {
  row(row: Record<string, unknown>): unknown {
    return this.mapRow(row);
  }
}
export const camelCase = new RowCamelCase();

type DirectPath = { pool: pg.Pool; preparedStatements: boolean; queryTimeoutMs: number; connectTimeoutMs: number };
const directPaths = new WeakMap<Db, DirectPath>();

// A statement compiled once (Kysely's `compile()`, with its values swapped per call) run straight on
// the pool, outside any transaction: what a hot read is left with once building and compiling are
// gone, without Kysely's per-query executor, connection provider and result-transform chain (a
// quarter of a status read's CPU in the API, measured with `BENCH_API_CPU_PROFILE`). Same pool, same
// client-side timeout, same prepared-statement rule; a client whose query failed is discarded
// rather than handed to the next query. A Db not made by createDb (none in the apps) takes
// Kysely's path.
export const executeCompiled = async <R>(db: Db, query: CompiledQuery<R>, parameters: readonly unknown[]): Promise<R[]> => {
  const direct = directPaths.get(db);
  if (!direct) return (await db.executeQuery<R>({ ...query, parameters })).rows;
  const values = [...parameters];
  const config: pg.QueryConfig = direct.preparedStatements && values.length > 0 ? { text: query.sql, values, name: statementName(query.sql) } : { text: query.sql, values };
  const result = await direct.pool.query<Record<string, unknown>>(config);
  return result.rows.map((row) => camelCase.row(row) as R);
};

export const createDb = (databaseUrl: string, options: DbOptions = {}): Db => {
  const queryTimeoutMs = options.queryTimeoutMs ?? defaultDbTimeouts.queryTimeoutMs;
  // Only what PgBouncer passes through in the startup packet: application_name (it tracks it per
  // client); every other setting is per transaction above or client-side.
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: options.poolSize ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? defaultDbTimeouts.connectTimeoutMs,
    query_timeout: queryTimeoutMs + CLIENT_TIMEOUT_GRACE_MS,
    application_name: options.applicationName ?? "kling-orchestrator",
  });
  // An idle client whose server went away emits 'error' on the pool; without a listener that is an
  // uncaught exception. The next checkout makes a fresh connection.
  pool.on("error", () => undefined);
  const config = { pool: poolFor(pool, options.preparedStatements ?? false) };
  const deadlines = transactionDeadlines(queryTimeoutMs);
  class Dialect extends PostgresDialect {
    override createDriver() {
      return new DeadlineDriver(config, deadlines);
    }
  }
  const db = new Kysely<DB>({ dialect: new Dialect(config), plugins: [camelCase] });
  directPaths.set(db, {
    pool,
    preparedStatements: options.preparedStatements ?? false,
    queryTimeoutMs,
    connectTimeoutMs: options.connectTimeoutMs ?? defaultDbTimeouts.connectTimeoutMs,
  });
  return db;
};

// A createDb Db's pool and bounds, for another executor on the same connections (prisma-kysely.ts).
export const poolOf = (db: Db): Readonly<DirectPath> | undefined => directPaths.get(db);

// jsonb parameters: pg sends JS arrays as Postgres arrays, so JSON values are always stringified.
export const asJson = (value: unknown): string | null => (value === undefined || value === null ? null : JSON.stringify(value));
