import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { runFleetScenario, startScenarioFleet } from "../support/fleet-scenario.ts";
import { startRedisCluster, type RedisClusterHandle } from "../support/redis-cluster.ts";

// Issue 15's "many machines" run on a real 3-master Redis Cluster (REDIS_CLUSTER_NODES to every
// process), Postgres direct: the fleet scenario (2 APIs, 3 workers, kills) plus the hash slot of the
// busy {submit} queue moved to another node mid-run. Not in `npm test` (minutes long): run by
// `npm run test:fleet-cluster`; FLEET_TASKS sets the size (default 120, the 300 with
// FLEET_TASKS=300).

const TASKS = Number(process.env.FLEET_TASKS ?? 120);

let cluster: RedisClusterHandle;
let run: Awaited<ReturnType<typeof startScenarioFleet>>;

beforeAll(async () => {
  cluster = await startRedisCluster();
  run = await startScenarioFleet({ templateDatabaseUrl: inject("templateDatabaseUrl"), env: { REDIS_CLUSTER_NODES: cluster.nodes }, logName: "cluster" });
}, 180_000);
afterAll(async () => {
  await run?.stop();
  await cluster?.stop();
}, 60_000);

describe(`${TASKS} tasks on 2 APIs and 3 workers over a 3-master Redis Cluster`, () => {
  it("when workers and an API are SIGKILLed and the submit queue's slot moves mid-run, then every task succeeds, each is created once within capacity, SSE crosses APIs, and every callback arrives in order", async () => {
    const slot = await cluster.slotOf(`${run.fleet.queuePrefix}:{submit}:wait`);
    const moves: number[] = [];
    const figures = await runFleetScenario({
      ...run,
      tasks: TASKS,
      marks: [
        {
          at: 0.35,
          act: async () => {
            const from = await cluster.ownerOf(slot);
            const to = (from + 1) % 3;
            await cluster.moveSlot(slot, to);
            moves.push(await cluster.ownerOf(slot));
            expect(moves.at(-1)).toBe(to);
            return `slot ${slot} ({submit}) moved node ${from} -> ${to}`;
          },
        },
      ],
    });
    expect(moves).toHaveLength(1);
    console.log(
      `fleet-cluster: ${figures.tasks} tasks in ${figures.seconds} s; ${figures.marks.join("; ")}; ${figures.createCalls} create calls (${figures.duplicatesRefused} refused as duplicates); ${figures.callbacks} callbacks; peak provider slots ${figures.peakSlots}/6`,
    );
  }, TASKS * 2_000 + 240_000);
});
