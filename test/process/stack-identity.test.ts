import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { EX_CONFIG } from "../../apps/domain/process/run-service.ts";
import { spawnService } from "../support/child-processes.ts";
import { startStack, type Stack } from "../support/stack.ts";

// Two stacks on one database and one QUEUE_PREFIX, each with its own provider configuration: the
// second one's workers would take the first one's jobs and send them to the wrong provider. The
// second refuses to start, loudly, unless told the prefix is shared on purpose.
let stack: Stack;
let redis: Redis;
beforeAll(async () => {
  stack = await startStack();
  redis = new Redis(inject("redisUrl"));
});
afterAll(async () => {
  await stack?.stop();
  if (stack) for await (const keys of redis.scanStream({ match: `${stack.env.queuePrefix}:stack-identity*` })) if (keys.length > 0) await redis.del(...(keys as string[]));
  redis?.disconnect();
});

// Test stacks share their prefix on purpose (QUEUE_PREFIX_SHARED=true in test/support/stack.ts); the
// processes started here do not.
const otherProvider = { PROVIDER: "simulator", PROVIDER_BASE_URL: "http://127.0.0.1:9/another-provider", QUEUE_PREFIX_SHARED: "false" };

describe("a queue prefix in use by another provider configuration", () => {
  it("when a worker with the same provider configuration starts on the prefix, then it starts", async () => {
    await expect(stack.startWorker()).resolves.toBeDefined();
  });

  it("when a worker with another provider starts on the prefix, then it refuses, naming the prefix, both configurations and the switch", async () => {
    const refused = stack.startWorker(otherProvider);
    await expect(refused).rejects.toThrow(new RegExp(`QUEUE_PREFIX '${stack.env.queuePrefix}' is in use`));
    await expect(refused).rejects.toThrow(/another-provider/);
    await expect(refused).rejects.toThrow(new RegExp(stack.simulator.url.replace(/[.:/]/g, "\\$&")));
    await expect(refused).rejects.toThrow(/QUEUE_PREFIX_SHARED=true/);
  });

  it("when an API with another provider starts on the prefix, then it refuses too", async () => {
    await expect(stack.startApi({ ...otherProvider })).rejects.toThrow(/QUEUE_PREFIX_SHARED=true/);
  });

  it("when QUEUE_PREFIX_SHARED=true, then it starts anyway (sharing is on purpose)", async () => {
    await expect(stack.startWorker({ ...otherProvider, QUEUE_PREFIX_SHARED: "true" })).resolves.toBeDefined();
  });

  it("when what is stored under the prefix holds no secret, then only names, kinds and base URLs are there", async () => {
    const stored = JSON.stringify(await redis.hgetall(`${stack.env.queuePrefix}:stack-identity`));
    expect(stored).toContain(stack.simulator.url);
    expect(stored).not.toContain("sim-local-key");
  });

  it("when the worker runs as its own process, then the refusal is a configuration exit (78), which npm start does not restart", async () => {
    const worker = spawnService("worker", { ...stack.workerEnv(otherProvider), LOG_LEVEL: "info" });
    const exit = await worker.exited;
    expect(exit).toEqual({ code: EX_CONFIG, signal: null });
    expect(worker.output()).toContain(`QUEUE_PREFIX '${stack.env.queuePrefix}' is in use`);
  }, 60_000);
});
