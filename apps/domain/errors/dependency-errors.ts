import { metrics } from "../metrics/metrics.ts";
import { AppError } from "./app-error.ts";

// How a database failure reads to a caller: each kind says what happened, truthfully (the issue saw
// "database is unreachable" for what was an overloaded pool).
export type DatabaseTrouble = "unreachable" | "busy" | "timeout" | "conflict";

const unreachableCodes = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENOTFOUND", "EHOSTUNREACH", "EPIPE", "57P01", "57P02", "57P03", "08000", "08003", "08006", "08001", "08004"]);

const walk = function* (error: unknown) {
  let current: unknown = error;
  for (let depth = 0; current && depth < 5; depth++) {
    yield current as { code?: unknown; message?: unknown };
    current = (current as { cause?: unknown }).cause;
  }
};

// Undefined for an error the database raised about the query itself (a constraint, bad input).
export const databaseTrouble = (error: unknown): DatabaseTrouble | undefined => {
  for (const { code, message } of walk(error)) {
    const text = typeof message === "string" ? message : "";
    // pg-pool: every connection is in use and none became free within connectionTimeoutMillis.
    if (/timeout exceeded when trying to connect/i.test(text)) return "busy";
    // pg's client-side query_timeout, the server's statement/lock timeout (57014, 55P03), or a new
    // connection that got no answer in time (a hung server).
    if (/Query read timeout|Connection terminated due to connection timeout/i.test(text) || code === "57014" || code === "55P03") return "timeout";
    if (code === "53300") return "busy"; // too many connections
    // PgBouncer: max_client_conn reached, or a client queued past query_wait_timeout.
    if (/no more connections allowed|query_wait_timeout/i.test(text)) return "busy";
    if (typeof code === "string" && unreachableCodes.has(code)) return "unreachable";
    // Postgres gave up on the transaction because of a concurrent one (a deadlock, a serialization
    // failure); it was rolled back. Callers retry it (retryOnConflict); one that still failed after
    // that is the caller's to retry, never a 500.
    if (code === "40P01" || code === "40001") return "conflict";
    if (/Connection terminated|connect(ion)? refused|Client has encountered a connection error|Connection timeout/i.test(text)) return "unreachable";
  }
  return undefined;
};

export const isDatabaseUnavailable = (error: unknown): boolean => databaseTrouble(error) !== undefined;

// Whether the statement may have reached the server (and, alone in its transaction, committed):
// a query that timed out waiting for its answer, or a connection lost mid-query. A failure to get a
// connection at all means nothing was sent.
export const statementMayHaveRun = (error: unknown): boolean => {
  for (const { message } of walk(error)) {
    if (typeof message === "string" && /Query read timeout|Connection terminated unexpectedly/i.test(message)) return true;
  }
  return false;
};

const pgCode = (error: unknown): string | undefined => {
  for (const { code } of walk(error)) if (typeof code === "string") return code;
  return undefined;
};

export const isUniqueViolation = (error: unknown): boolean => pgCode(error) === "23505";

// A deadlock or serialization failure: the transaction was rolled back whole, so running it again
// is safe. The ledger's lock order (credit-ledger.ts) keeps its known paths from deadlocking; this
// is for what it does not foresee.
export const isConflict = (error: unknown): boolean => databaseTrouble(error) === "conflict";

// Runs `work` (a statement, or a whole transaction: never a part of one, which the conflict has
// already aborted) again when Postgres undid it for a conflict, up to `attempts` times.
export const retryOnConflict = async <T>(work: () => Promise<T>, attempts = 3): Promise<T> => {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (error) {
      if (attempt >= attempts || !isConflict(error)) throw error;
      metrics.databaseConflictRetries.inc();
    }
  }
};

const troubleMessages: Record<DatabaseTrouble, string> = {
  unreachable: "the database is unreachable; retry later",
  busy: "the database has no free connection (all in use, or the server is at its connection limit); retry later",
  timeout: "the database did not answer in time; retry later",
  conflict: "the database undid the change because a concurrent change collided with it; retry",
};

// `writeOutcome`: what a caller of a write should assume (a timed-out commit may still land, so a
// create is retried with the same external_task_id, which answers the first task if it exists).
// Refusals made because of the database, so that they can be counted and logged as such.
const databaseRefusals = new WeakSet<AppError>();
export const isDatabaseRefusal = (error: unknown): boolean => error instanceof AppError && databaseRefusals.has(error);

export const databaseUnavailable = (cause: unknown, writeOutcome?: "nothing_stored" | "unknown") => {
  const trouble = databaseTrouble(cause) ?? "unreachable";
  const suffix =
    writeOutcome === "nothing_stored"
      ? " (nothing was stored)"
      : writeOutcome === "unknown"
        ? " (the request may or may not have been stored: retry it unchanged with the same external_task_id to learn which)"
        : "";
  const refusal = new AppError("dependency_unavailable", `${troubleMessages[trouble]}${suffix}`, { cause });
  databaseRefusals.add(refusal);
  return refusal;
};

export const queueUnavailable = (cause?: unknown) =>
  new AppError("dependency_unavailable", "the job queue (Redis) is unreachable; nothing was stored, retry later", { cause });
