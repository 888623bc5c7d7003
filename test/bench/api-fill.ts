// What the API benchmark reads and writes: one account, a few thousand tasks in assorted statuses,
// and pools of `submitted` tasks that each receive exactly one `processing` callback. Raw SQL, in a
// few statements: the fill is set-up, not part of any figure.
import { randomBytes } from "node:crypto";
import type pg from "pg";
import { v7 as uuidv7 } from "uuid";
import { generateApiKey, hashApiKey } from "../../apps/domain/account/api-key.ts";
import type { TaskStatus } from "../../apps/domain/db/database.ts";
import { seededRandom } from "../../apps/simulator/seeded-random.ts";

export type StatusTask = { id: string; externalTaskId: string | null; status: TaskStatus };
export type CallbackTask = { id: string; token: string; providerTaskId: string };

// URLs on loopback port 9 (discard): nothing fetches them (no worker runs), and if anything did, it
// would stay on this machine.
export const benchImageUrl = "http://127.0.0.1:9/bench-source.png";

// Shares of the status mix; succeeded tasks carry n stored images, so reads include the image rows.
const statusMix: [TaskStatus, number][] = [
  ["queued", 0.1],
  ["submitted", 0.1],
  ["processing", 0.15],
  ["succeeded", 0.5],
  ["failed", 0.15],
];

const token = () => randomBytes(24).toString("base64url");

export const createBenchAccount = async (db: pg.Pool) => {
  const accountId = uuidv7();
  const key = generateApiKey();
  await db.query("insert into account (id, name) values ($1, 'bench-api')", [accountId]);
  await db.query("insert into api_key (id, account_id, key_hash, label) values ($1, $2, $3, 'bench')", [uuidv7(), accountId, hashApiKey(key)]);
  return { accountId, key };
};

// Only ended tasks, for a run with a worker: a running task of the fill would hold provider slots
// (the worker's ledger is rebuilt from the rows) and be polled at a provider that never saw it.
export const endedStatusMix: [TaskStatus, number][] = [
  ["succeeded", 0.75],
  ["failed", 0.25],
];

export const fillStatusTasks = async (db: pg.Pool, accountId: string, count: number, seed: number, mix = statusMix): Promise<StatusTask[]> => {
  const random = seededRandom(seed);
  const pick = (): TaskStatus => {
    let roll = random();
    for (const [status, share] of mix) {
      if (roll < share) return status;
      roll -= share;
    }
    return "succeeded";
  };
  const tasks = Array.from({ length: count }, (_, i) => ({
    id: uuidv7(),
    // Half carry an external id, as drop-in clients send one; not UUID-shaped, so a drop-in read by
    // external id takes the external-id lookup straight away.
    externalTaskId: random() < 0.5 ? `bench-ext-${i}` : null,
    status: pick(),
    n: 1 + Math.floor(random() * 4),
  }));
  await db.query(
    `insert into task (id, account_id, external_task_id, status, image_url, up_ratio, down_ratio, left_ratio, right_ratio, n,
                       callback_token, provider, provider_task_id, provider_status, final_unit_deduction, attempts,
                       failure_class, failure_message, submitted_at, finished_at, next_check_at, updated_at)
     select t.id, $1, t.ext, t.status::task_status, $2, 0.1, 0.1, 0.2, 0.2, t.n,
            t.token,
            case when t.status = 'queued' then null else 'simulator' end,
            case when t.status = 'queued' then null else 'sim-' || t.id end,
            case t.status when 'queued' then null when 'succeeded' then 'succeed' when 'failed' then 'failed' else t.status end,
            case when t.status = 'succeeded' then t.n::text end,
            case when t.status = 'queued' then 0 else 1 end,
            case when t.status = 'failed' then 'provider_failed' end,
            case when t.status = 'failed' then 'the provider reported failure' end,
            case when t.status = 'queued' then null else now() - interval '1 minute' end,
            case when t.status in ('succeeded', 'failed') then now() end,
            case when t.status in ('succeeded', 'failed') then null else now() + interval '1 hour' end,
            now()
     from unnest($3::uuid[], $4::text[], $5::text[], $6::int[], $7::text[]) as t(id, ext, status, n, token)`,
    [
      accountId,
      benchImageUrl,
      tasks.map((t) => t.id),
      tasks.map((t) => t.externalTaskId),
      tasks.map((t) => t.status),
      tasks.map((t) => t.n),
      tasks.map(() => token()),
    ],
  );
  const images = tasks.filter((t) => t.status === "succeeded").flatMap((t) => Array.from({ length: t.n }, (_, index) => ({ id: t.id, index })));
  await db.query(
    `insert into task_image (task_id, index, provider_url, storage_key, width, height, bytes, sha256, stored_at)
     select i.id, i.idx, 'http://127.0.0.1:9/bench-result.png', 'tasks/' || i.id || '/' || i.idx || '.png', 416, 416, 180000,
            md5(i.id::text) || md5(i.idx::text), now()
     from unnest($1::uuid[], $2::int[]) as i(id, idx)`,
    [images.map((i) => i.id), images.map((i) => i.index)],
  );
  return tasks.map(({ id, externalTaskId, status }) => ({ id, externalTaskId, status }));
};

// Tasks the provider has accepted (`submitted`, with its task id) and that wait for its callbacks.
export const fillCallbackTasks = async (db: pg.Pool, accountId: string, count: number): Promise<CallbackTask[]> => {
  const tasks = Array.from({ length: count }, () => {
    const id = uuidv7();
    return { id, token: token(), providerTaskId: `sim-${id}` };
  });
  for (let from = 0; from < tasks.length; from += 20_000) {
    const chunk = tasks.slice(from, from + 20_000);
    await db.query(
      `insert into task (id, account_id, status, image_url, up_ratio, down_ratio, left_ratio, right_ratio, n, callback_token,
                         provider, provider_task_id, provider_status, attempts, submitted_at, next_check_at, updated_at)
       select t.id, $1, 'submitted', $2, 0.1, 0.1, 0.2, 0.2, 1, t.token,
              'simulator', t.ptid, 'submitted', 1, now(), now() + interval '1 hour', now()
       from unnest($3::uuid[], $4::text[], $5::text[]) as t(id, token, ptid)`,
      [accountId, benchImageUrl, chunk.map((t) => t.id), chunk.map((t) => t.token), chunk.map((t) => t.providerTaskId)],
    );
  }
  return tasks;
};

// The provider's callback body for one task (apps/domain/provider/kling-protocol/kling-wire.schema.ts).
export const processingCallbackBody = (task: CallbackTask, atMs: number) =>
  JSON.stringify({
    task_id: task.providerTaskId,
    task_status: "processing",
    task_status_msg: "",
    task_info: { external_task_id: task.id },
    created_at: atMs - 1_000,
    updated_at: atMs,
  });
