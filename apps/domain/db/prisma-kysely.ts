import { PrismaPg } from "@prisma/adapter-pg";
import {
  CompiledQuery,
  Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type DatabaseConnection,
  type Driver,
  type QueryResult,
  type TransactionSettings,
} from "kysely";
import { camelCase, poolOf, transactionBounds, type DB, type Db } from "./database.ts";
import { PrismaClient } from "./generated/prisma/client.ts";

// The same Kysely statements (built, compiled, executeCompiled's compiled ones) run through Prisma
// Client instead of straight on pg: `$queryRawUnsafe` / `$executeRawUnsafe`, in a `$transaction`
// callback for a transaction, over @prisma/adapter-pg on the Db's own pg pool. The SQL is the same
// byte for byte, so whatever the two cost apart is Prisma's layer (its WebAssembly query compiler,
// argument and result serialisation, its transaction manager). The webhook receiver can run on it
// (CALLBACK_DB_CLIENT=prisma); `npm run bench:api` weighs it against Kysely on pg in the same run:
// ~half the callbacks per API core (2026-12-07, docs/benchmarks.md), so the default stays Kysely.
// adapter-pg sends every statement unnamed (DB_PREPARED_STATEMENTS does not apply): fine behind
// PgBouncer in transaction mode, as is the transaction, which holds one connection throughout.

type TxClient = Parameters<Parameters<PrismaClient["$transaction"]>[0]>[0];
type Runner = Pick<PrismaClient, "$queryRawUnsafe" | "$executeRawUnsafe">;

// Thrown into Prisma's transaction callback to have it roll back; never leaves this module.
class Rollback extends Error {}

// Prisma hands int8 out as BigInt and numeric as its Decimal; pg (and so the rest of the apps, whose
// types prisma-kysely writes with bigIntTypeOverride = "string") as strings. Timestamps, json and
// arrays arrive as pg gives them. A numeric loses its trailing zeros ("0.14", pg: "0.140000"): the
// same number, and the apps read it with Number().
const asPg = (value: unknown): unknown => {
  if (typeof value === "bigint") return value.toString();
  if (value !== null && typeof value === "object" && !(value instanceof Date) && !Array.isArray(value) && "toFixed" in value && "d" in value) {
    return String(value);
  }
  return value;
};
const pgRow = (row: Record<string, unknown>) => {
  for (const key in row) row[key] = asPg(row[key]);
  return row;
};

// Which statements answer rows: $executeRaw returns only a count, $queryRaw only rows. A raw
// (`sql` template) statement is run as a query: its rows, if any, are what a caller reads.
const answersRows = (query: CompiledQuery): boolean => {
  const node = query.query as { kind: string; returning?: unknown };
  return node.kind === "SelectQueryNode" || node.kind === "RawNode" || node.returning !== undefined;
};

class PrismaConnection implements DatabaseConnection {
  private tx: { client: TxClient; settle: (rollback?: Rollback) => void; done: Promise<unknown> } | undefined;
  constructor(
    private readonly prisma: PrismaClient,
    private readonly bounds: ReturnType<typeof transactionBounds>,
  ) {}

  async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    const runner: Runner = this.tx?.client ?? this.prisma;
    const values = query.parameters as unknown[];
    if (answersRows(query)) {
      const rows = await runner.$queryRawUnsafe<Record<string, unknown>[]>(query.sql, ...values);
      return { rows: rows.map(pgRow) as R[] };
    }
    const count = await runner.$executeRawUnsafe(query.sql, ...values);
    return { rows: [], numAffectedRows: BigInt(count) };
  }

  // eslint-disable-next-line require-yield
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error("streaming is not supported through Prisma Client");
  }

  // Prisma's interactive transaction is a callback; Kysely's is begin/commit/rollback calls. The
  // callback is held open until commit or rollback settles it.
  async begin(settings: TransactionSettings) {
    let settle!: (rollback?: Rollback) => void;
    const ended = new Promise<void>((resolve, reject) => {
      settle = (rollback) => (rollback ? reject(rollback) : resolve());
    });
    let started!: (client: TxClient) => void;
    const opened = new Promise<TxClient>((resolve) => (started = resolve));
    const done = this.prisma.$transaction(
      async (client) => {
        started(client);
        await ended;
      },
      {
        // Waiting for a pool connection, and the whole transaction's life, bounded as on pg.
        maxWait: this.bounds.connectTimeoutMs,
        timeout: this.bounds.transactionTimeoutMs,
        ...(settings.isolationLevel ? { isolationLevel: isolationLevelOf(settings.isolationLevel) } : {}),
      },
    );
    const client = await Promise.race([opened, done.then(() => Promise.reject(new Error("transaction ended before it began")))]);
    this.tx = { client, settle, done };
    // The same server-side deadlines as the pg path (`set local`: this transaction only, so
    // PgBouncer in transaction mode is fine); parameterless, so one simple-protocol round trip.
    await client.$executeRawUnsafe(this.bounds.deadlines);
  }

  async end(commit: boolean) {
    const tx = this.tx;
    this.tx = undefined;
    if (!tx) throw new Error("no transaction to end");
    tx.settle(commit ? undefined : new Rollback());
    await tx.done.catch((error: unknown) => {
      if (!(error instanceof Rollback)) throw error;
    });
  }
}

const isolationLevels = {
  "read uncommitted": "ReadUncommitted",
  "read committed": "ReadCommitted",
  "repeatable read": "RepeatableRead",
  serializable: "Serializable",
} as const;
const isolationLevelOf = (level: NonNullable<TransactionSettings["isolationLevel"]>) => {
  if (level === "snapshot") throw new Error("Postgres has no snapshot isolation level");
  return isolationLevels[level];
};

class PrismaDriver implements Driver {
  constructor(
    private readonly prisma: PrismaClient,
    private readonly bounds: ReturnType<typeof transactionBounds>,
  ) {}
  async init() {}
  // No connection is held outside a transaction: Prisma takes one from the pool per statement.
  async acquireConnection(): Promise<DatabaseConnection> {
    return new PrismaConnection(this.prisma, this.bounds);
  }
  async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings) {
    await (connection as PrismaConnection).begin(settings);
  }
  async commitTransaction(connection: DatabaseConnection) {
    await (connection as PrismaConnection).end(true);
  }
  async rollbackTransaction(connection: DatabaseConnection) {
    await (connection as PrismaConnection).end(false);
  }
  async releaseConnection() {}
  async destroy() {
    await this.prisma.$disconnect();
  }
}

// A Db whose statements run through Prisma Client on `db`'s pool (no second pool, so no more
// connections). Destroying it disconnects Prisma but leaves the pool to `db`.
export const prismaDbOver = (db: Db): Db => {
  const pool = poolOf(db);
  if (!pool) throw new Error("prismaDbOver: a Db made by createDb is needed (its pool)");
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool.pool) });
  const bounds = transactionBounds(pool.queryTimeoutMs, pool.connectTimeoutMs);
  return new Kysely<DB>({
    dialect: {
      createAdapter: () => new PostgresAdapter(),
      createDriver: () => new PrismaDriver(prisma, bounds),
      createIntrospector: (k) => new PostgresIntrospector(k),
      createQueryCompiler: () => new PostgresQueryCompiler(),
    },
    plugins: [camelCase],
  });
};
