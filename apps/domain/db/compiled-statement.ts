import type { Compilable, CompiledQuery } from "kysely";
import { executeCompiled, type Db } from "./database.ts";

// A hot statement built and compiled once per pool, then run with its values swapped in
// (executeCompiled): building and compiling through Kysely (its plugins' tree transforms included)
// was ~10% of a worker's busy time per task in bench:scale's profiles. `build` gets one placeholder
// per value name (typed `never`, so it fits any column) and may use each only where Kysely makes a
// parameter of it (a where, a set, a raw `${}`), never to choose the statement's text.
export const compiledOnce = <Name extends string, R>(names: readonly Name[], build: (db: Db, value: Record<Name, never>) => Compilable<R>) => {
  const nameOf = new Map<symbol, Name>(names.map((name) => [Symbol(name), name]));
  const placeholders = Object.fromEntries([...nameOf].map(([placeholder, name]) => [name, placeholder])) as unknown as Record<Name, never>;
  const compiled = new WeakMap<Db, CompiledQuery<R>>();
  return async (db: Db, values: Record<Name, unknown>): Promise<R[]> => {
    let query = compiled.get(db);
    if (!query) compiled.set(db, (query = build(db, placeholders).compile()));
    return executeCompiled(db, query, query.parameters.map((p) => (typeof p === "symbol" && nameOf.has(p) ? values[nameOf.get(p)!] : p)));
  };
};
