import { cometApiFamily } from "./cometapi/cometapi.family.ts";
import { klingOfficialFamily } from "./kling-official/kling-official.family.ts";
import type { ProviderAdapter, ProviderConfig, ProviderFamily, ProviderKind } from "./provider-adapter.ts";
import { simulatorFamily } from "./simulator/simulator.family.ts";

// Every provider family, by the `kind` a configuration names: the one place a family is chosen.
export const providerFamilies: Record<ProviderKind, ProviderFamily> = {
  kling: klingOfficialFamily,
  cometapi: cometApiFamily,
  simulator: simulatorFamily,
};

export const createProviderAdapter = (config: ProviderConfig): ProviderAdapter => providerFamilies[config.kind].createAdapter(config);
