import type { RedisClient } from "../queues/redis-connection.ts";
import type { ProviderAdapter } from "../provider/provider-adapter.ts";
import { createProviderAdapter } from "../provider/provider-families.ts";
import type { ProviderRoute } from "../provider/provider-routes.schema.ts";
import { createProviderControls, type ControlEnv, type ProviderControls } from "./provider-controls.ts";

// Every route's controls (slots, gate, learnt run time, all in Redis under the route's own keys)
// and its provider adapter, preferred route first. Shared by the API (callbacks release slots and
// are read by the adapter, /readyz) and the worker (submission, polling).
export type RouteControls = ProviderControls & { route: ProviderRoute; adapter: ProviderAdapter };

export type ProviderRouteSet = {
  readonly all: readonly RouteControls[];
  // A task's route; a row written before routes existed (null) belongs to the preferred route.
  of(name: string | null | undefined): RouteControls | undefined;
  // A task holds slots on one route at most; releasing on every route needs no lookup of which.
  releaseSlots(taskId: string): Promise<number>;
  largestCapacity: number;
  close(): Promise<void>;
};

// A route's keys (slot ledger, gate, run time) share one hash tag, so each of its scripts stays in
// one cluster slot, and different routes land on different slots (spread over the nodes).
export const routeTag = (route: Pick<ProviderRoute, "name" | "legacyKeys">) => (route.legacyKeys ? "{provider}" : `{route:${route.name}}`);
export const routeKeyPrefix = (queuePrefix: string, route: Pick<ProviderRoute, "name" | "legacyKeys">) => `${queuePrefix}:${routeTag(route)}`;

export const createProviderRouteSet = (redis: RedisClient, queuePrefix: string, routes: ProviderRoute[], env: ControlEnv): ProviderRouteSet => {
  const all = routes.map((route) => ({
    ...createProviderControls(redis, routeKeyPrefix(queuePrefix, route), { ...env, PROVIDER_CAPACITY: route.capacity }),
    route,
    adapter: createProviderAdapter(route),
  }));
  const byName = new Map(all.map((r) => [r.route.name, r]));
  return {
    all,
    of: (name) => (name === null || name === undefined ? all[0] : byName.get(name)),
    releaseSlots: async (taskId) => (await Promise.all(all.map((r) => r.slots.release(taskId)))).reduce((a, b) => a + b, 0),
    largestCapacity: Math.max(...all.map((r) => r.route.capacity)),
    close: async () => {
      await Promise.all(all.map((r) => r.slots.close()));
    },
  };
};
