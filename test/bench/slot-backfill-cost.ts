// Benchmark (not a test): what the slot ledger's backfilling check (slot-ledger.lib.lua,
// backfill_fits) costs Redis per acquire, against the strict-order acquire (no run time learnt: no
// check) and a bare EVALSHA of `return 1`, in the same run, on a Redis of its own (INFO
// commandstats then counts only this). Run: `npx tsx test/bench/slot-backfill-cost.ts`.
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { createProviderRunTime } from "../../apps/domain/provider-capacity/provider-run-time.ts";
import { createProviderSlots } from "../../apps/domain/provider-capacity/provider-slots.ts";
import { startPrivateRedis } from "../support/redis-server.ts";

const CALLS = Number(process.env.BENCH_CALLS ?? 2_000);
const server = await startPrivateRedis();
const redis = new Redis(server.url);
const evalshaUsec = async () => {
  const m = /cmdstat_evalsha:calls=(\d+),usec=(\d+)/.exec(await redis.info("commandstats"));
  return m ? Number(m[2]) / Number(m[1]) : Number.NaN;
};
// A full route of 20 slots, a head of 20 waiting and a task of 1 behind it asking again and again
// (refused: the head needs every slot). `holders`: how the 19 held slots are split.
const perAcquire = async (learnt: boolean, holders: number) => {
  const prefix = `cost-${randomUUID().slice(0, 8)}`;
  if (learnt) await createProviderRunTime(redis, prefix).record(3_600_000);
  const slots = createProviderSlots(redis, prefix, { capacity: 20, recoverMs: 60_000 });
  for (let i = 0; i < holders; i++) await slots.acquire(`holder-${i}`, 19 / holders, 9);
  await slots.acquire("head", 20, 1);
  await redis.config("RESETSTAT");
  for (let i = 0; i < CALLS; i++) await slots.acquire("behind", 1, 2);
  const usec = await evalshaUsec();
  await slots.close();
  return usec;
};
try {
  const sha = (await redis.script("LOAD", "return 1")) as string;
  for (let run = 1; run <= 3; run++) {
    const strict = await perAcquire(false, 19);
    const small = await perAcquire(true, 19);
    const large = await perAcquire(true, 1);
    await redis.config("RESETSTAT");
    for (let i = 0; i < CALLS; i++) await redis.evalsha(sha, 0);
    const raw = await evalshaUsec();
    console.log(
      `run ${run}: Redis µs per acquire: strict order ${strict.toFixed(1)}, with the backfill check (19 holders of 1) ${small.toFixed(1)} ` +
        `(1 holder of 19) ${large.toFixed(1)}; bare EVALSHA ${raw.toFixed(1)}; check/strict ${(small / strict).toFixed(2)}, check/bare ${(small / raw).toFixed(1)}`,
    );
  }
} finally {
  redis.disconnect();
  await server.kill();
}
