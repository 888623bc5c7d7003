// The raw baselines: the statements each API path needs, on a plain pg.Pool of the API's size (10),
// in this process. Unnamed (unprepared) statements, as a query builder on the same pool would send
// them. Each op answers true when it did one unit of work, false when its supply is used up.
import { randomBytes } from "node:crypto";
import type { Queue } from "bullmq";
import type pg from "pg";
import { v7 as uuidv7 } from "uuid";
import { hashApiKey } from "../../apps/domain/account/api-key.ts";
import { jobCatalog } from "../../apps/domain/queues/job-catalog.ts";
import { processingCallbackBody, type CallbackTask } from "./api-fill.ts";

// BullMQ's largest priority, as apps/domain/queues/task-queues.ts clamps it.
const maxPriority = 2_097_152;

const accountOf = async (db: pg.Pool, key: string): Promise<string> => {
  const { rows } = await db.query<{ account_id: string }>("select account_id from api_key where key_hash = $1", [hashApiKey(key)]);
  if (!rows[0]) throw new Error("baseline: the bench API key is not in api_key");
  return rows[0].account_id;
};

// One status read = three statements, as the API's read runs them: the API key by its hash, the
// task (all columns) by primary key within the account, and its image rows.
export const rawStatusRead = (db: pg.Pool, key: string, pickTaskId: () => string) => async () => {
  const accountId = await accountOf(db, key);
  const id = pickTaskId();
  const task = await db.query("select * from task where id = $1 and account_id = $2", [id, accountId]);
  if (task.rowCount !== 1) throw new Error(`baseline: task ${id} not found`);
  await db.query("select * from task_image where task_id = $1 order by index", [id]);
  return true;
};

// The drop-in read by external id: the same, with the task found by (account_id, external_task_id).
export const rawStatusReadByExternalId = (db: pg.Pool, key: string, pickExternalId: () => string) => async () => {
  const accountId = await accountOf(db, key);
  const externalTaskId = pickExternalId();
  const task = await db.query<{ id: string }>("select * from task where account_id = $1 and external_task_id = $2", [accountId, externalTaskId]);
  if (!task.rows[0]) throw new Error(`baseline: external id ${externalTaskId} not found`);
  await db.query("select * from task_image where task_id = $1 order by index", [task.rows[0].id]);
  return true;
};

const inTransaction = async (db: pg.Pool, work: (client: pg.PoolClient) => Promise<void>) => {
  const client = await db.connect();
  try {
    await client.query("begin");
    await work(client);
    await client.query("commit");
  } catch (error) {
    await client.query("rollback").catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
};

// One intake = one transaction: insert task, insert its `queued` event, add the submit job to BullMQ
// (jobId = task id, the catalog's options, a priority), commit.
export const rawIntake = (db: pg.Pool, queue: Queue, options: { accountId: string; imageUrl: string }) => {
  const { accountId, imageUrl } = options;
  let added = 0;
  return async () => {
    const taskId = uuidv7();
    await inTransaction(db, async (client) => {
      await client.query(
        `insert into task (id, account_id, image_url, up_ratio, down_ratio, left_ratio, right_ratio, n, callback_token, next_check_at, updated_at)
         values ($1, $2, $3, 0.1, 0.1, 0.2, 0.2, 1, $4, $5, now())`,
        [taskId, accountId, imageUrl, randomBytes(24).toString("base64url"), new Date(Date.now() + 60_000)],
      );
      await client.query("insert into task_event (task_id, from_status, to_status, source) values ($1, null, 'queued', 'api')", [taskId]);
      const priority = ++added;
      await queue.add(jobCatalog.submit.name, { taskId }, { ...jobCatalog.submit.options, jobId: taskId, priority: Math.min(maxPriority, Math.max(1, priority)) });
    });
    return true;
  };
};

// One callback = one transaction of the four statements the receiver needs: the task by id, the raw
// callback into the inbox, the guarded update submitted -> processing, and the transition's event.
// Each task of the pool is used once, so every update applies.
export const rawCallback = (db: pg.Pool, pool: CallbackTask[]) => {
  let next = 0;
  return async () => {
    const task = pool[next++];
    if (!task) return false;
    const now = Date.now();
    await inTransaction(db, async (client) => {
      const found = await client.query<{ callback_token: string; status: string }>("select * from task where id = $1", [task.id]);
      if (found.rows[0]?.callback_token !== task.token) throw new Error(`baseline: callback task ${task.id} not found`);
      await client.query("insert into provider_callback (task_id, raw_body) values ($1, $2) returning id", [task.id, processingCallbackBody(task, now)]);
      const updated = await client.query(
        `update task set status = 'processing', provider_task_id = $2, provider_status = 'processing', provider_status_msg = null,
                         provider_updated_at = $3, next_check_at = $4, updated_at = now()
         where id = $1 and status = 'submitted'`,
        [task.id, task.providerTaskId, now, new Date(now + 60_000)],
      );
      if (updated.rowCount !== 1) throw new Error(`baseline: callback task ${task.id} was not submitted`);
      await client.query(
        "insert into task_event (task_id, from_status, to_status, source, detail) values ($1, 'submitted', 'processing', 'callback', $2)",
        [task.id, JSON.stringify({ provider_status: "processing", provider_updated_at: now })],
      );
    });
    return true;
  };
};
