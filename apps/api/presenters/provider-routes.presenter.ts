import type { GateState } from "../../domain/provider-capacity/provider-gate.ts";
import type { ProviderRouteSet, RouteControls } from "../../domain/provider-capacity/provider-route-set.ts";
import type { ProviderRouteStateView, ProviderSummaryView } from "./provider-routes.schema.ts";

const gateView = (gate: GateState) =>
  gate.mode === "closed"
    ? { state: gate.mode }
    : { state: gate.mode, reason: gate.reason, since: new Date(gate.since).toISOString(), next_probe_at: new Date(gate.until).toISOString() };

export const describeRoute = async (route: RouteControls, order: number): Promise<ProviderRouteStateView> => {
  const [gate, slots, runMs] = await Promise.all([route.gate.state(), route.slots.snapshot(), route.runTime.estimateMs()]);
  return {
    name: route.route.name,
    kind: route.route.kind,
    order,
    ...gateView(gate),
    slots: { capacity: slots.capacity, effective: slots.effective, in_use: slots.used },
    run_ms: runMs === undefined ? null : Math.round(runMs),
    unit_price: route.route.unitPrice,
  };
};

export type RouteView = ProviderRouteStateView;

// The provider as a whole, for /readyz: work can flow while any route's circuit is closed, and the
// slots add up. With a single route this is exactly that route's state.
export const describeProvider = async (routes: ProviderRouteSet): Promise<ProviderSummaryView> => {
  const views = await Promise.all(routes.all.map((route, index) => describeRoute(route, index + 1)));
  const flowing = views.find((v) => v.state === "closed");
  const { state, reason, since, next_probe_at } = flowing ?? views[0]!;
  return {
    state,
    ...(state === "closed" ? {} : { reason, since, next_probe_at }),
    slots: {
      capacity: views.reduce((a, v) => a + v.slots.capacity, 0),
      effective: views.reduce((a, v) => a + v.slots.effective, 0),
      in_use: views.reduce((a, v) => a + v.slots.in_use, 0),
    },
    routes: views,
  };
};
