import { z } from "zod";
import { envPositiveMs } from "../config/parse-env.ts";

// The API's live-progress settings (SSE streams and long-polls).
export const liveProgressEnv = {
  // A comment line this often keeps proxies from closing a quiet stream and finds dead clients.
  LIVE_HEARTBEAT_MS: envPositiveMs.default(15_000),
  // Streams and long-polls re-read Postgres this often even without a notification: the most a
  // lost pub/sub message can delay an update.
  LIVE_RESYNC_MS: envPositiveMs.default(5_000),
  // Open streams plus long-polls per account in one API process; past it: 429.
  LIVE_MAX_STREAMS_PER_ACCOUNT: z.coerce.number().int().min(1).max(100_000).default(100),
  // The longest `?wait=` a status read accepts, in seconds.
  LIVE_MAX_WAIT_SECONDS: z.coerce.number().int().min(1).max(300).default(60),
};
