import { Prisma } from "../db/prisma-client.ts";
import { AppError } from "./app-error.ts";

const connectionCodes = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENOTFOUND", "EHOSTUNREACH", "57P01", "57P03"]);

// True for "the database could not be reached", as opposed to a query that the database refused.
export const isDatabaseUnavailable = (error: unknown): boolean => {
  if (error instanceof Prisma.PrismaClientInitializationError) return true;
  if (error instanceof Prisma.PrismaClientKnownRequestError && ["P1001", "P1002", "P1008", "P1017"].includes(error.code)) return true;
  let current: unknown = error;
  for (let depth = 0; current && depth < 5; depth++) {
    const { code, message } = current as { code?: unknown; message?: unknown };
    if (typeof code === "string" && connectionCodes.has(code)) return true;
    if (typeof message === "string" && /connect(ion)? (terminated|timeout|refused)|timeout exceeded when trying to connect|Can't reach database/i.test(message)) return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
};

export const isUniqueViolation = (error: unknown): boolean =>
  error instanceof Prisma.PrismaClientKnownRequestError && error.code === "P2002";

export const databaseUnavailable = (cause: unknown) =>
  new AppError("dependency_unavailable", "the database is unreachable; nothing was stored, retry later", { cause });

export const queueUnavailable = (cause?: unknown) =>
  new AppError("dependency_unavailable", "the job queue (Redis) is unreachable; nothing was stored, retry later", { cause });
