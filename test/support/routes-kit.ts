import { expect } from "vitest";
import { parseSimulatorConfig } from "../../apps/simulator/simulator.config.ts";
import { startSimulator, type RunningSimulator } from "../../apps/simulator/simulator.server.ts";
import { getTask, readiness, simAdmin, type SimTaskView } from "./fault-kit.ts";
import { startStack, type Stack } from "./stack.ts";

// Several provider routes (PROVIDER_ROUTES), each a simulator of its own over real HTTP: a
// CometAPI-shaped one (bearer key, /kling paths) or a Kling-shaped one (an access-key pair whose
// JWT signatures the simulator verifies).

export type RouteSpec = {
  name: string;
  kind: "cometapi" | "kling";
  capacity: number;
  priority?: number;
  unitPrice?: number;
  // What the route signs with, when it should differ from what its simulator verifies.
  secretKey?: string;
  // The route's callback signing secret, shared with its simulator.
  webhookSecret?: string;
  simulatorEnv?: Record<string, string>;
};

export const jwtPair = { accessKey: "ak-routes-test", secretKey: "sk-routes-test-0123456789" };

export type RoutesStack = {
  stack: Stack;
  sims: Record<string, RunningSimulator>;
  routesJson: string;
  stop(): Promise<void>;
};

export const startRoutesStack = async (options: {
  routes: RouteSpec[];
  // Given to both the API and the worker.
  env?: Record<string, string>;
  workerEnv?: Record<string, string>;
}): Promise<RoutesStack> => {
  const sims: Record<string, RunningSimulator> = {};
  for (const route of options.routes) {
    sims[route.name] = await startSimulator(
      parseSimulatorConfig({
        SIMULATOR_PORT: "0",
        LOG_LEVEL: "silent",
        SIM_RUN_MS: "300",
        SIM_TASK_CONTROL: "true",
        SIM_CAPACITY: String(route.capacity),
        ...(route.kind === "kling" ? { SIM_ACCESS_KEY: jwtPair.accessKey, SIM_SECRET_KEY: jwtPair.secretKey } : {}),
        ...(route.webhookSecret ? { SIM_WEBHOOK_SECRET: route.webhookSecret } : {}),
        ...route.simulatorEnv,
      }),
    );
  }
  const routesJson = JSON.stringify(
    options.routes.map((r) => ({
      name: r.name,
      kind: r.kind,
      baseUrl: sims[r.name]!.url,
      ...(r.kind === "kling" ? { ...jwtPair, ...(r.secretKey ? { secretKey: r.secretKey } : {}) } : { apiKey: `key-${r.name}` }),
      capacity: r.capacity,
      ...(r.priority === undefined ? {} : { priority: r.priority }),
      ...(r.unitPrice === undefined ? {} : { unitPrice: r.unitPrice }),
      ...(r.webhookSecret === undefined ? {} : { webhookSecret: r.webhookSecret }),
    })),
  );
  // The stack's own simulator stays idle: PROVIDER and PROVIDER_BASE_URL are unset ("" is unset).
  const shared = { PROVIDER_ROUTES: routesJson, CIRCUIT_OPEN_MS: "300", ...options.env };
  const stack = await startStack({
    apiEnv: shared,
    workerEnv: { ...shared, PROVIDER: "", PROVIDER_BASE_URL: "", ...options.workerEnv },
  });
  return {
    stack,
    sims,
    routesJson,
    stop: async () => {
      await stack.stop();
      await Promise.all(Object.values(sims).map((s) => s.stop()));
    },
  };
};

export const routeAdmin = (routes: RoutesStack, name: string) => simAdmin({ simulator: routes.sims[name]! });

export const routeView = async (routes: RoutesStack, name: string) =>
  ((await readiness(routes.stack)).provider.routes as { name: string; state: string; slots: { in_use: number; capacity: number } }[]).find(
    (r) => r.name === name,
  );

// Every task once at exactly one route, on the route it says, with no create refused as a
// duplicate anywhere: nothing was created (or paid) twice.
export const expectEachRunOnce = async (routes: RoutesStack, tasks: { id: string; key: string }[]) => {
  const byRoute: Record<string, { tasks: SimTaskView[]; calls: { external_task_id: string; count: number }[] }> = {};
  for (const name of Object.keys(routes.sims)) {
    const admin = routeAdmin(routes, name);
    const [simTasks, calls, stats] = await Promise.all([admin.tasks(), admin.createCalls(), admin.stats()]);
    expect(stats.duplicate_external_task_ids, `route ${name}: creates refused as duplicates`).toBe(0);
    byRoute[name] = { tasks: simTasks, calls };
  }
  const ranOn: Record<string, string> = {};
  for (const task of tasks) {
    const view = await getTask(routes.stack, task);
    const holders = Object.entries(byRoute).filter(([, r]) => r.tasks.some((t) => t.external_task_id === task.id));
    expect(holders.map(([name]) => name), `task ${task.id}: routes holding a provider task`).toHaveLength(1);
    const [name, route] = holders[0]!;
    expect(view.provider.route, `task ${task.id}: the route it names`).toBe(name);
    expect(route.tasks.filter((t) => t.external_task_id === task.id), `task ${task.id} at ${name}`).toHaveLength(1);
    expect(view.provider.task_id).toBe(route.tasks.find((t) => t.external_task_id === task.id)!.task_id);
    ranOn[task.id] = name;
  }
  return { ranOn, byRoute };
};

export const createCallsAt = (routes: RoutesStack, name: string, taskId: string) =>
  routeAdmin(routes, name)
    .createCalls()
    .then((calls) => calls.find((c) => c.external_task_id === taskId)?.count ?? 0);
