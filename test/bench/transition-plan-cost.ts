// The transition statement (a receiver's move: inbox row, leased delivery) sent unnamed, named, and as its
// plan-cached function (plan-cached-statement.ts), alternating on one connection, each in a transaction
// rolled back; and EXPLAIN ANALYZE's planning and execution times. A throw-away database. Run:
// `npx tsx test/bench/transition-plan-cost.ts`.
import pg from "pg";
import { prepareDatabase } from "../../apps/domain/db/prepare-database.ts";
import { createDb } from "../../apps/domain/db/database.ts";
import { transitionTask } from "../../apps/domain/task/task-transition.ts";
import { createBenchAccount, fillCallbackTasks } from "./api-fill.ts";

const url = `postgres://postgres@127.0.0.1:5432/kling_plancost_${process.pid}`;
await prepareDatabase(url);
const pool = new pg.Pool({ connectionString: url, max: 2 });
const account = await createBenchAccount(pool);
const tasks = await fillCallbackTasks(pool, account.accountId, 400);
await pool.query(`update task set origin='dropin', callback_url='http://127.0.0.1:9/t/' || id::text`);
let captured: { text: string; values: unknown[] } | undefined;
const orig = pg.Pool.prototype.query;
(pg.Pool.prototype as any).query = function (this: pg.Pool, config: any, ...rest: any[]) {
  if (typeof config === "object" && config.text?.includes('"before"') && !captured) captured = { text: config.text, values: config.values };
  return (orig as any).call(this, config, ...rest);
};
const db = createDb(url);
const req = (taskId: string) => ({
  taskId, to: "processing" as const, from: ["submitted" as const], source: "callback" as const,
  detail: { provider_status: "processing", provider_updated_at: 1 },
  inboxEntry: { rawBody: '{"a":1}', providerStatus: "processing", webhookId: null, outcome: "applied" as const, detail: null },
  leaseOutboundMs: 20000,
  data: { providerTaskId: "sim", providerStatus: "processing", providerStatusMsg: "", providerUpdatedAt: "1", submittedAt: new Date(), waitReason: null, nextCheckAt: new Date(Date.now() + 3600000) },
});
await transitionTask({ db, taskChanged: () => {} }, req(tasks[0]!.id));
console.log("sql chars", captured!.text.length, "params", captured!.values.length);
const idIndex = captured!.values.indexOf(tasks[0]!.id);
const client = await pool.connect();
const plan: number[] = [], exec: number[] = [];
for (let i = 1; i < 201; i++) {
  const values = [...captured!.values]; values[idIndex] = tasks[i]!.id;
  await client.query("begin");
  const r = await client.query({ text: `explain (analyze, summary, format json) ${captured!.text}`, values });
  await client.query("rollback");
  const j = r.rows[0]["QUERY PLAN"][0];
  plan.push(j["Planning Time"]); exec.push(j["Execution Time"]);
}
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!.toFixed(3);
console.log(`explain: planning p50 ${med(plan)} ms, execution p50 ${med(exec)} ms`);
// wall: unnamed vs named, alternating, in a transaction rolled back
const wall = { unnamed: [] as number[], named: [] as number[] };
for (let i = 201; i < 399; i++) {
  const values = [...captured!.values]; values[idIndex] = tasks[i]!.id;
  const named = i % 2 === 0;
  await client.query("begin");
  const t = performance.now();
  await client.query(named ? { text: captured!.text, values, name: "mv" } : { text: captured!.text, values });
  (named ? wall.named : wall.unnamed).push(performance.now() - t);
  await client.query("rollback");
}
console.log(`wall p50 unnamed ${med(wall.unnamed)} ms, named ${med(wall.named)} ms`);
await transitionTask({ db, taskChanged: () => {} }, req(tasks[399]!.id));
await new Promise((r) => setTimeout(r, 1000));
const fn = (await client.query("select proname from pg_proc where proname like 'kling_plan_%'")).rows[0].proname;
const w2 = { unnamed: [] as number[], fn: [] as number[] };
await pool.query("update task set status='submitted'");
await pool.query("delete from webhook_delivery");
for (let round = 0; round < 3; round++) for (let i = 0; i < 398; i++) {
  const values = [...captured!.values]; values[idIndex] = tasks[i]!.id;
  const viaFn = i % 2 === 0;
  await client.query("begin");
  const t = performance.now();
  await client.query(viaFn ? { text: `select * from ${fn}(${values.map((_, k) => `$${k + 1}`).join(", ")})`, values } : { text: captured!.text, values });
  (viaFn ? w2.fn : w2.unnamed).push(performance.now() - t);
  await client.query("rollback");
}
console.log(`wall p50 unnamed ${med(w2.unnamed)} ms, function ${med(w2.fn)} ms (n=${w2.fn.length} each)`);
client.release();
await db.destroy(); await pool.end();
const admin = new pg.Client({ connectionString: "postgres://postgres@127.0.0.1:5432/postgres" });
await admin.connect(); await admin.query(`drop database kling_plancost_${process.pid} with (force)`); await admin.end();
