import { z } from "zod";

// Configuration fails fast: one message naming every missing or malformed variable, then exit.
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

export const parseEnv = <S extends z.ZodType>(schema: S, env: Record<string, string | undefined>): z.output<S> => {
  // Empty strings mean "not set", as in most .env files.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const result = schema.safeParse(cleaned);
  if (!result.success) {
    throw new ConfigError(result.error.issues.map((i) => `${i.path.join(".") || "(env)"}: ${i.message}`));
  }
  return result.data;
};

export const envBoolean = z
  .enum(["true", "false", "1", "0", "yes", "no"])
  .transform((v) => v === "true" || v === "1" || v === "yes");

export const envCommaList = z
  .string()
  .transform((v) => v.split(",").map((s) => s.trim().toLowerCase()).filter(Boolean));

export const envPort = z.coerce
  .number({ error: "must be a port number (0-65535)" })
  .int({ error: "must be a port number (0-65535)" })
  .min(0, { error: "must be a port number (0-65535)" })
  .max(65535, { error: "must be a port number (0-65535)" });

export const envPositiveMs = z.coerce
  .number({ error: "must be a whole number of milliseconds" })
  .int({ error: "must be a whole number of milliseconds" })
  .positive({ error: "must be a positive number of milliseconds" });
