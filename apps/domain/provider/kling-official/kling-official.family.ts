import type { ProviderFamily } from "../provider-adapter.ts";
import { createKlingHttpAdapter } from "../kling-protocol/kling-http.adapter.ts";

// Kling's own API (KLING.md "Kling official"): https://api-singapore.klingai.com (or -beijing),
// routes at /v1/..., a bearer API key or the access-key pair's JWT, `down_expansion_ratio`.
export const KLING_OFFICIAL_BASE_URL = "https://api-singapore.klingai.com";

export const klingOfficialFamily: ProviderFamily = {
  kind: "kling",
  title: "Kling",
  pathPrefix: "",
  defaultDownField: "down",
  acceptsAccessKeyPair: true,
  createAdapter: (config) => createKlingHttpAdapter(config),
};
