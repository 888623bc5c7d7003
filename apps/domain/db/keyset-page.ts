import { sql, type SelectQueryBuilder, type StringReference } from "kysely";
import { z } from "zod";

// Keyset pagination, the one way every list pages: rows ordered by a unique key, a page is
// "after the last key seen", and limit + 1 rows are read to know whether there is a next page
// without counting. The cursor on the wire is that key as it is (a UUIDv7 id or a delivery's
// bigint seq), so cursors already handed out keep working.

const cursorError = "must be a cursor returned as next_cursor";
export const uuidCursorSchema = z.uuid({ error: cursorError });
// A bigint's decimal digits (Postgres int8 holds at most 19).
export const seqCursorSchema = z.string().regex(/^\d{1,19}$/, { error: cursorError });
export const pageLimitSchema = z.coerce.number().int().min(1).max(200).default(50);

export type PageQuery = { cursor?: string; limit: number };
export type KeysetOrder = "asc" | "desc";

export const keysetPage = async <DB, TB extends keyof DB, O extends Record<K, string>, K extends keyof O>(
  select: SelectQueryBuilder<DB, TB, O>,
  key: { column: StringReference<DB, TB>; field: K; order: KeysetOrder },
  page: PageQuery,
): Promise<{ rows: O[]; nextCursor: string | undefined }> => {
  const column = sql.ref(key.column);
  const after = key.order === "desc" ? sql<boolean>`${column} < ${page.cursor}` : sql<boolean>`${column} > ${page.cursor}`;
  const rows = await (page.cursor ? select.where(after) : select).orderBy(column, key.order).limit(page.limit + 1).execute();
  const shown = rows.slice(0, page.limit);
  return { rows: shown, nextCursor: rows.length > page.limit ? shown.at(-1)?.[key.field] : undefined };
};
