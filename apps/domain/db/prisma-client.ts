import { PrismaPg } from "@prisma/adapter-pg";
import { PrismaClient } from "./generated/client.ts";

export type Db = PrismaClient;

export const createDb = (databaseUrl: string, options: { poolSize?: number } = {}): Db =>
  new PrismaClient({
    adapter: new PrismaPg({
      connectionString: databaseUrl,
      max: options.poolSize ?? 10,
      // A Postgres that does not answer must become a fast 503, not a hung request.
      connectionTimeoutMillis: 3_000,
    }),
  });

export { Prisma } from "./generated/client.ts";
export type { Task, TaskImage, TaskEvent, TaskStatus, EventSource } from "./generated/client.ts";
