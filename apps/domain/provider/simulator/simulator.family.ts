import type { ProviderFamily } from "../provider-adapter.ts";
import { createKlingHttpAdapter } from "../kling-protocol/kling-http.adapter.ts";

// The bundled simulator (apps/simulator/) imitates Kling official at its own address: the same
// routes (it also mounts them under /kling), errors, statuses and callbacks; the bearer token names
// a simulated account (SIMULATOR_API_KEY), or it checks the access-key pair's JWT like Kling.
export const simulatorFamily: ProviderFamily = {
  kind: "simulator",
  title: "the simulator",
  pathPrefix: "",
  defaultDownField: "down",
  acceptsAccessKeyPair: true,
  createAdapter: (config) => createKlingHttpAdapter(config),
};
