import { z } from "zod";
import type { ApiTarget } from "./api-client.ts";
import { usageError } from "./exit-codes.ts";
import type { BatchOptions } from "./submit-batch.ts";

type FlagValue = string | boolean | (string | boolean)[] | undefined;
export type Flags = Record<string, FlagValue>;

const number = (flag: string, value: FlagValue, schema: z.ZodNumber) => {
  if (value === undefined) return undefined;
  const parsed = schema.safeParse(Number(value));
  if (typeof value !== "string" || value.trim() === "" || !parsed.success) {
    throw usageError(`--${flag} must be ${schema.description}; got ${JSON.stringify(value)}.`);
  }
  return parsed.data;
};

const ratio = z.number().min(0).max(2).describe("a number from 0 to 2");
export const positiveInt = (what: string, max: number) => z.number().int().min(1).max(max).describe(`${what} from 1 to ${max}`);

const text = (flag: string, value: FlagValue) => {
  if (value === undefined) return undefined;
  if (typeof value !== "string") throw usageError(`--${flag} needs a value.`);
  return value;
};

// The provider requires all four ratios; a side not given is not expanded (0), and an item of a
// CSV/NDJSON input that sets its own ratio overrides it.
export const batchOptionsFrom = (flags: Flags): BatchOptions => ({
  up: number("up", flags.up, ratio) ?? 0,
  down: number("down", flags.down, ratio) ?? 0,
  left: number("left", flags.left, ratio) ?? 0,
  right: number("right", flags.right, ratio) ?? 0,
  prompt: text("prompt", flags.prompt),
  n: number("n", flags.n, positiveInt("a whole number", 9)),
  name: text("name", flags.name),
  callbackUrl: text("callback-url", flags["callback-url"]),
});

export const intervalFrom = (flags: Flags) => number("interval", flags.interval, positiveInt("milliseconds", 600_000)) ?? 1_000;

// Flags win over the environment; nothing else reads process.env for the connection.
export const apiTargetFrom = (flags: Flags, env: NodeJS.ProcessEnv): ApiTarget => {
  const apiUrl = text("api-url", flags["api-url"]) ?? env.API_URL ?? "http://127.0.0.1:3000";
  if (!URL.canParse(apiUrl) || !/^https?:$/.test(new URL(apiUrl).protocol)) throw usageError(`The API URL must be an http(s) URL; got ${JSON.stringify(apiUrl)}.`);
  const apiKey = text("api-key", flags["api-key"]) ?? env.API_KEY;
  if (!apiKey) throw usageError("No API key: pass --api-key or set API_KEY.", "`npm start` prints the local key (local-dev-key-0123456789 unless BOOTSTRAP_API_KEY says otherwise).");
  return { apiUrl, apiKey };
};
