import path from "node:path";
import { z } from "zod";
import { loadOrCreateLocalServerKey, serverKeyFrom, type ServerKey } from "../crypto/server-key.ts";

// Placeholders that once shipped in this repository or its compose file: a secret anyone can read
// must never sign or encrypt anything, so they are refused wherever they turn up.
const knownPublicSecrets = new Set(["dev-only-signing-secret-change-me", "change-me-in-production-please", "change-me"]);

const secret = z
  .string()
  .min(32, { error: "must be at least 32 characters (e.g. `openssl rand -base64 32`)" })
  .refine((v) => !knownPublicSecrets.has(v), { error: "is a published placeholder; generate your own" });

export const secretsEnv = {
  NODE_ENV: z.string().default("development"),
  // The installation's one secret; every signing and encryption key is derived from it. Required in
  // production; a local run generates one in STATE_DIR/server-key on first start.
  SERVER_KEY: secret.optional(),
  STATE_DIR: z.string().default("var"),
};

type SecretsEnv = { NODE_ENV: string; SERVER_KEY?: string | undefined; STATE_DIR: string };

export const requireServerKeyInProduction = (env: SecretsEnv) => env.NODE_ENV !== "production" || env.SERVER_KEY !== undefined;
export const serverKeyRequiredIssue = { path: ["SERVER_KEY"], error: "must be set in production (NODE_ENV=production)" };

export const localServerKeyFile = (env: SecretsEnv) => path.resolve(env.STATE_DIR, "server-key");

export const resolveServerKey = async (env: SecretsEnv): Promise<ServerKey> =>
  serverKeyFrom(env.SERVER_KEY ?? (await loadOrCreateLocalServerKey(localServerKeyFile(env))));
