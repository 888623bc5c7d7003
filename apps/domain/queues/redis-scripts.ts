import { readFileSync } from "node:fs";
import type { RedisClient } from "./redis-connection.ts";

// Our Lua scripts live in .lua files next to the code that calls them, and are registered on each
// connection with ioredis' defineCommand: EVALSHA on every call, EVAL (and the script cache filled)
// only after a NOSCRIPT, which a Redis restarted empty or a fresh cluster node answers once. Every
// script reads the time from Redis (TIME) itself: machines' clocks disagree by seconds, Redis has one.
export type ScriptSpec = { name: string; numberOfKeys: number; files: readonly URL[] };

type ScriptCall = (keys: readonly string[], args: readonly (string | number)[]) => Promise<unknown>;

const sources = new Map<string, string>();
const defined = new WeakMap<RedisClient, Set<string>>();

const sourceOf = (spec: ScriptSpec) => {
  let lua = sources.get(spec.name);
  if (lua === undefined) {
    // A script may start with shared helpers (a file of local functions) ahead of its own body.
    lua = spec.files.map((file) => readFileSync(file, "utf8")).join("\n");
    sources.set(spec.name, lua);
  }
  return lua;
};

export const redisScript = (redis: RedisClient, spec: ScriptSpec): ScriptCall => {
  const names = defined.get(redis) ?? new Set<string>();
  defined.set(redis, names);
  if (!names.has(spec.name)) {
    redis.defineCommand(spec.name, { lua: sourceOf(spec), numberOfKeys: spec.numberOfKeys });
    names.add(spec.name);
  }
  const command = (redis as unknown as Record<string, (...args: (string | number)[]) => Promise<unknown>>)[spec.name]!;
  return (keys, args) => {
    if (keys.length !== spec.numberOfKeys) throw new Error(`script ${spec.name} takes ${spec.numberOfKeys} keys, got ${keys.length}`);
    return command.call(redis, ...keys, ...args);
  };
};
