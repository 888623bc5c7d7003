import { z } from "zod";
import type { ProviderFamily } from "../provider-adapter.ts";
import { createKlingHttpAdapter, readKlingError } from "../kling-protocol/kling-http.adapter.ts";

// CometAPI's wrapper of Kling (KLING.md "CometAPI wrapper", the seed document): Kling's routes under
// /kling on https://api.cometapi.com, a bearer CometAPI key only, `bottom_expansion_ratio` in its
// example. Whether it passes Kling's error codes through is UNCONFIRMED: they are read when present.
export const COMETAPI_BASE_URL = "https://api.cometapi.com";

// CometAPI's own errors: {"error": {"message", "type": "comet_api_error", "param", "code"}}. Its
// `code` is CometAPI's, not Kling's, so it is not classified on: the HTTP status decides, as
// CometAPI advises (kling-error-codes.ts falls back on it when no Kling code came).
const cometApiErrorSchema = z.object({ error: z.object({ message: z.string().min(1) }).loose() }).loose();

export const readCometApiError = (body: unknown) => {
  const kling = readKlingError(body);
  if (kling.code !== undefined) return kling;
  const own = cometApiErrorSchema.safeParse(body);
  return own.success ? { code: undefined, message: own.data.error.message } : kling;
};

export const cometApiFamily: ProviderFamily = {
  kind: "cometapi",
  title: "CometAPI",
  pathPrefix: "/kling",
  defaultDownField: "bottom",
  acceptsAccessKeyPair: false,
  createAdapter: (config) => createKlingHttpAdapter(config, { readError: readCometApiError }),
};
