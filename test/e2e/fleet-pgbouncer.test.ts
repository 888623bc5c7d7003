import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { runFleetScenario, startScenarioFleet } from "../support/fleet-scenario.ts";
import { startPgBouncer, type PgBouncer } from "../support/pgbouncer.ts";

// Issue 15's "many machines" run (test/support/fleet-scenario.ts: 2 APIs, 3 workers, a faulty
// provider of capacity 6, two workers and one API SIGKILLed mid-run) on a single Redis, with
// Postgres behind PgBouncer in transaction mode. FLEET_TASKS sets the size: 60 in the suite, 300
// with `npm run test:fleet`.

const TASKS = Number(process.env.FLEET_TASKS ?? 60);
const BOUNCER_POOL = 10;

let bouncer: PgBouncer;
let run: Awaited<ReturnType<typeof startScenarioFleet>>;

beforeAll(async () => {
  const template = inject("templateDatabaseUrl");
  bouncer = await startPgBouncer({ target: template, poolSize: BOUNCER_POOL });
  run = await startScenarioFleet({
    templateDatabaseUrl: template,
    env: { REDIS_URL: inject("redisUrl") },
    databaseEnv: (direct) => ({ DATABASE_URL: bouncer.via(direct), DATABASE_DIRECT_URL: direct }),
    logName: "pgbouncer",
  });
}, 120_000);
afterAll(async () => {
  await run?.stop();
  await bouncer?.stop();
}, 60_000);

describe(`${TASKS} tasks on 2 APIs and 3 workers, one Redis, Postgres through PgBouncer (transaction mode)`, () => {
  it("when workers and an API are SIGKILLed mid-run, then every task succeeds, each is created once at the provider within its capacity, SSE on one API sees what the other did, and every callback arrives in order", async () => {
    const { fleet } = run;
    const database = new URL(fleet.databaseUrl).pathname.slice(1);
    let serverConnectionsPeak = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const { rows } = await fleet.db.query<{ n: number }>("select count(*)::int as n from pg_stat_activity where datname = $1", [database]);
        serverConnectionsPeak = Math.max(serverConnectionsPeak, rows[0]!.n);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    })();
    const figures = await runFleetScenario({ ...run, tasks: TASKS }).finally(async () => {
      sampling = false;
      await sampler;
    });

    // Postgres saw the bouncer's pool and the workers' LISTEN connections, not every app pool.
    console.log(`fleet: ${TASKS} tasks, ${figures.marks.join(", ")}; ${figures.createCalls} create calls (${figures.duplicatesRefused} refused as duplicates); ${figures.callbacks} callbacks; peak server connections ${serverConnectionsPeak} (apps' pools: 2 x 10 + 3 x 10)`);
    expect(serverConnectionsPeak).toBeLessThanOrEqual(BOUNCER_POOL + 5 + 3);
  }, TASKS * 2_000 + 240_000);
});
