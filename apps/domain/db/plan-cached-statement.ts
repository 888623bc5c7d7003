import { createHash } from "node:crypto";
import type { CompiledQuery } from "kysely";
import type pg from "pg";
import { camelCase, executeCompiled, poolOf, type Db, type Tx } from "./database.ts";

// A big statement sent unnamed is parsed and planned by Postgres at every call: the transition's
// (a dozen CTEs, ~4 KB of text) spent 2.8 ms planning for 5.2 ms executing, measured with EXPLAIN
// ANALYZE at load 25. Named statements (DB_PREPARED_STATEMENTS) keep the plan but are session state,
// which a transaction-mode pooler may not carry. A PL/pgSQL function is a database object, and
// PL/pgSQL keeps its statements' plans per backend: so the statement, exactly as compiled, becomes
// the body of a function made for it (its name a hash of the text and the result's columns), and the
// call is a tiny unnamed `select * from kling_plan_<hash>($1, ...)` that any backend answers from
// its own cached plan. The text stays where it is built (one home); the function is made on the
// first call (after a direct run that gives the result's columns; the parameters' types come from
// a PREPARE in a transaction, as Postgres infers them for the direct run), and whatever fails there
// (no right to create functions, a type a function cannot take) leaves the statement on the direct
// path. Only outside a transaction: a call that fails because the function no longer fits (a
// migration changed the table, someone dropped it) is then run again directly, which is safe since
// a failed statement changed nothing.
type Plan = { fn?: string; failed?: boolean; defining?: boolean };
const plans = new WeakMap<pg.Pool, Map<string, Plan>>();
const MAX_FUNCTIONS_PER_POOL = 100;
let probes = 0;

// The function no longer fits the statement: undefined_function, datatype_mismatch (its result
// type), feature_not_supported (a cached plan whose result type changed).
const STALE_FUNCTION_CODES = new Set(["42883", "42804", "0A000"]);

const quoteIdent = (name: string) => `"${name.replaceAll('"', '""')}"`;

const define = async (pool: pg.Pool, text: string, fields: readonly pg.FieldDef[]): Promise<string> => {
  const name = `kling_plan_${createHash("sha1").update(text).update(JSON.stringify(fields.map((f) => [f.name, f.dataTypeID]))).digest("hex").slice(0, 32)}`;
  const tag = "$kling_plan$";
  if (text.includes(tag)) throw new Error("statement text holds the body's quote tag");
  const client = await pool.connect();
  let broken = false;
  try {
    const exists = await client.query("select 1 from pg_proc where proname = $1", [name]);
    if (exists.rowCount) return name;
    // A prepared statement outlives its transaction: deallocated below, and named afresh each time.
    const probe = `kling_probe_${process.pid}_${++probes}`;
    await client.query("begin");
    let paramTypes: string[];
    let resultTypes: string[];
    try {
      await client.query(`prepare ${probe} as ${text}`);
      const { rows } = await client.query<{ params: string[]; results: string[] }>(
        `select (select array_agg(format_type(t, null) order by i) from unnest(parameter_types::oid[]) with ordinality as p(t, i)) as params,
                (select array_agg(format_type(t, null) order by i) from unnest($2::oid[]) with ordinality as r(t, i)) as results
         from pg_prepared_statements where name = $1`,
        [probe, fields.map((f) => f.dataTypeID)],
      );
      paramTypes = rows[0]?.params ?? [];
      resultTypes = rows[0]?.results ?? [];
    } finally {
      // Inside the transaction: behind a transaction-mode pooler the next statement may go to
      // another server connection, which would leave this one's probe behind.
      await client.query(`deallocate ${probe}`).catch(() => undefined);
      await client.query("rollback").catch(() => (broken = true));
    }
    if (resultTypes.length !== fields.length || paramTypes.includes("unknown")) throw new Error("statement's types not known");
    const params = paramTypes.map((type, i) => `p${i + 1} ${type}`).join(", ");
    const columns = fields.map((f, i) => `${quoteIdent(f.name)} ${resultTypes[i]}`).join(", ");
    // `use_column`: the result's column names are the function's OUT parameters too; in the body
    // every such name means the column, as it did in the statement. `$n` are the parameters.
    await client.query(
      `create function ${name}(${params}) returns table (${columns}) language plpgsql volatile as ${tag}
       #variable_conflict use_column
       begin return query ${text}; end ${tag}`,
    );
    return name;
  } catch (error) {
    // Another process made it at the same moment: use theirs.
    const exists = await client.query("select 1 from pg_proc where proname = $1", [name]).catch(() => undefined);
    if (exists?.rowCount) return name;
    throw error;
  } finally {
    client.release(broken);
  }
};

export const executePlanCached = async <R>(db: Db | Tx, query: CompiledQuery<R>, parameters: readonly unknown[]): Promise<R[]> => {
  const direct = poolOf(db as Db);
  // Named statements keep their plans already; a transaction (not a Db) takes the direct path.
  if (!direct || direct.preparedStatements) return executeCompiled(db as Db, query, parameters);
  let byText = plans.get(direct.pool);
  if (!byText) plans.set(direct.pool, (byText = new Map()));
  let plan = byText.get(query.sql);
  if (!plan) {
    plan = byText.size < MAX_FUNCTIONS_PER_POOL ? {} : { failed: true };
    byText.set(query.sql, plan);
  }
  const values = [...parameters];
  if (plan.fn) {
    try {
      const result = await direct.pool.query<Record<string, unknown>>({ text: `select * from ${plan.fn}(${values.map((_, i) => `$${i + 1}`).join(", ")})`, values });
      return result.rows.map((row) => camelCase.row(row) as R);
    } catch (error) {
      if (!STALE_FUNCTION_CODES.has((error as { code?: string }).code ?? "")) throw error;
      plan.fn = undefined;
      plan.failed = true;
    }
  }
  const result = await direct.pool.query<Record<string, unknown>>({ text: query.sql, values });
  if (!plan.fn && !plan.failed && !plan.defining) {
    const state = plan;
    state.defining = true;
    void define(direct.pool, query.sql, result.fields).then(
      (fn) => (state.fn = fn),
      () => (state.failed = true),
    );
  }
  return result.rows.map((row) => camelCase.row(row) as R);
};

// The functions hold dependencies on the types their statements use (an enum as a parameter or a
// column), so a migration that drops or replaces such a type would fail on them: they are dropped
// before migrations run (prepare-database.ts). A process still running falls back to the direct
// statement when its function is gone, and a process started after remakes them.
export const dropPlanFunctions = async (client: pg.Client) => {
  const { rows } = await client.query<{ signature: string }>(
    "select oid::regprocedure::text as signature from pg_proc where proname like 'kling\\_plan\\_%' and pronamespace = current_schema()::regnamespace",
  );
  for (const { signature } of rows) await client.query(`drop function if exists ${signature}`);
};
