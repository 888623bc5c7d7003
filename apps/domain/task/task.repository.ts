import { sql, type CompiledQuery } from "kysely";
import { jsonArrayFrom } from "kysely/helpers/postgres";
import { compiledOnce } from "../db/compiled-statement.ts";
import { isUuid } from "../db/uuid.ts";
import { keysetPage, type PageQuery } from "../db/keyset-page.ts";
import { executeCompiled, type Db, type Task, type TaskImage, type TaskStatus } from "../db/database.ts";
import { AppError } from "../errors/app-error.ts";


const notFound = (id: string) => new AppError("not_found", `task '${id}' not found`);

export type StoredImageView = Pick<TaskImage, "index" | "providerUrl" | "storageKey" | "width" | "height" | "bytes" | "sha256">;
export type TaskWithImages = Task & { images: StoredImageView[] };

// One round trip: the task and its images (as JSON), so a status read costs one query.
export const selectTaskWithImages = (db: Db) =>
  db
    .selectFrom("task")
    .selectAll("task")
    .select((eb) => [
      jsonArrayFrom(
        eb
          .selectFrom("taskImage")
          .select(["taskImage.index", "taskImage.providerUrl", "taskImage.storageKey", "taskImage.width", "taskImage.height", "taskImage.bytes", "taskImage.sha256"])
          .whereRef("taskImage.taskId", "=", "task.id")
          .orderBy("taskImage.index"),
      ).as("images"),
    ]);

// The status read is the hottest query: it is built and compiled once per pool, and each read only
// puts its values in (Kysely's query building was ~9% of a read's CPU, measured with
// BENCH_API_CPU_PROFILE). Kysely's recipe "execute compiled queries".
//
// Reads that arrive together (in the same turn of the event loop) share one statement: the
// (account, value) pairs go in as two arrays and each read gets the row matching both, or none.
// Under load that folds many round trips, socket writes and statements into one (a socket write
// per statement was the largest single cost of a read); a read alone runs the one-row statement.
// Ownership is the same: a row is only ever handed to a read whose account it belongs to.
const ACCOUNT = Symbol("account id");
const VALUE = Symbol("looked-up value");
const MAX_BATCH = 100;
type Lookup = { accountId: string; value: string; key: string; resolve: (task: TaskWithImages | undefined) => void; reject: (error: unknown) => void };
type Statements = { one: CompiledQuery<TaskWithImages>; many: CompiledQuery<TaskWithImages> };
const statusRead = (column: "id" | "externalTaskId") => {
  const compiled = new WeakMap<Db, Statements>();
  const pending = new WeakMap<Db, Lookup[]>();
  const statementsFor = (db: Db): Statements => {
    let statements = compiled.get(db);
    if (!statements) {
      const arrayType = column === "id" ? sql.raw("uuid[]") : sql.raw("text[]");
      statements = {
        one: selectTaskWithImages(db)
          .where("task.accountId", "=", ACCOUNT as unknown as string)
          .where(`task.${column}`, "=", VALUE as unknown as string)
          .limit(1)
          .compile(),
        many: selectTaskWithImages(db)
          .where(
            (eb) =>
              sql<boolean>`(${eb.ref("task.accountId")}, ${eb.ref(`task.${column}`)}) in (select * from unnest(${ACCOUNT}::uuid[], ${VALUE}::${arrayType}))`,
          )
          .compile(),
      };
      compiled.set(db, statements);
    }
    return statements;
  };
  // Uuids are compared as Postgres prints them (lower case); external ids as sent.
  const keyOf = (accountId: string, value: string) => `${accountId} ${column === "id" ? value.toLowerCase() : value}`;
  const flush = async (db: Db, lookups: Lookup[]) => {
    const { one, many } = statementsFor(db);
    try {
      if (lookups.length === 1) {
        const [lookup] = lookups as [Lookup];
        const parameters = one.parameters.map((p) => (p === ACCOUNT ? lookup.accountId : p === VALUE ? lookup.value : p));
        lookup.resolve((await executeCompiled(db, one, parameters))[0]);
        return;
      }
      const accounts = lookups.map((l) => l.accountId);
      const values = lookups.map((l) => l.value);
      const parameters = many.parameters.map((p) => (p === ACCOUNT ? accounts : p === VALUE ? values : p));
      const found = new Map<string, TaskWithImages>();
      for (const row of await executeCompiled(db, many, parameters)) {
        const value = column === "id" ? row.id : row.externalTaskId;
        if (value !== null) found.set(keyOf(row.accountId, value), row);
      }
      for (const lookup of lookups) lookup.resolve(found.get(lookup.key));
    } catch (error) {
      for (const lookup of lookups) lookup.reject(error);
    }
  };
  return (db: Db, accountId: string, value: string): Promise<TaskWithImages | undefined> =>
    new Promise((resolve, reject) => {
      let lookups = pending.get(db);
      if (!lookups || lookups.length >= MAX_BATCH) {
        const batch: Lookup[] = [];
        lookups = batch;
        pending.set(db, batch);
        setImmediate(() => {
          if (pending.get(db) === batch) pending.delete(db);
          void flush(db, batch);
        });
      }
      lookups.push({ accountId, value, key: keyOf(accountId, value), resolve, reject });
    });
};
const readTaskById = statusRead("id");
const readTaskByExternalId = statusRead("externalTaskId");

// A task of another account is indistinguishable from one that does not exist. With byExternalId,
// `id` may be either the task's id or the caller's external_task_id (Kling: "use either"); the
// task id wins, and intake refuses an external_task_id equal to one of the account's task ids, so
// the rule never has to choose.
export const getAccountTask = async (
  db: Db,
  accountId: string,
  id: string,
  options: { byExternalId?: boolean } = {},
): Promise<TaskWithImages> => {
  const byId = isUuid(id);
  if (!byId && !options.byExternalId) throw notFound(id);
  // By id first, then by external id: two plain index lookups (an OR of the two was measured at
  // half the speed), and the second only when the first finds nothing.
  const task =
    (byId ? await readTaskById(db, accountId, id) : undefined) ??
    (options.byExternalId ? await readTaskByExternalId(db, accountId, id) : undefined);
  if (!task) throw notFound(id);
  return task;
};

export type TaskListQuery = PageQuery & { externalTaskId?: string; status?: TaskStatus };

// Ids are UUIDv7 (time-ordered), so "newest first, after this id" is a stable cursor.
export const listAccountTasks = async (db: Db, accountId: string, query: TaskListQuery) => {
  let select = selectTaskWithImages(db).where("task.accountId", "=", accountId);
  if (query.externalTaskId) select = select.where("task.externalTaskId", "=", query.externalTaskId);
  if (query.status) select = select.where("task.status", "=", query.status);
  const page = await keysetPage(select, { column: "task.id", field: "id", order: "desc" }, query);
  return { tasks: page.rows, nextCursor: page.nextCursor };
};

// The provider's list (KLING.md: pageNum 1..1000, pageSize 1..500), newest first.
export const pageAccountTasks = (db: Db, accountId: string, page: { pageNum: number; pageSize: number }) =>
  selectTaskWithImages(db)
    .where("task.accountId", "=", accountId)
    .orderBy("task.id", "desc")
    .limit(page.pageSize)
    .offset((page.pageNum - 1) * page.pageSize)
    .execute();

export const listTaskEvents = async (db: Db, accountId: string, taskId: string) => {
  if (!isUuid(taskId)) throw notFound(taskId);
  const owned = await db.selectFrom("task").select("id").where("id", "=", taskId).where("accountId", "=", accountId).executeTakeFirst();
  if (!owned) throw notFound(taskId);
  return db.selectFrom("taskEvent").selectAll().where("taskId", "=", taskId).orderBy("id", "asc").execute();
};

// Compiled once per pool, like the status read: every provider callback starts with it.
const findTaskQuery = new WeakMap<Db, CompiledQuery<Task>>();
export const findTask = async (db: Db, taskId: string): Promise<Task | undefined> => {
  let query = findTaskQuery.get(db);
  if (!query) findTaskQuery.set(db, (query = db.selectFrom("task").selectAll().where("id", "=", VALUE as unknown as string).compile()));
  return (await executeCompiled(db, query, query.parameters.map((p) => (p === VALUE ? taskId : p))))[0];
};

// The archive's read: compiled once (compiled-statement.ts).
const taskWithImages = compiledOnce(["taskId"], (db, v) => selectTaskWithImages(db).where("task.id", "=", v.taskId));
export const findTaskWithImages = async (db: Db, taskId: string): Promise<TaskWithImages | undefined> => (await taskWithImages(db, { taskId }))[0];
