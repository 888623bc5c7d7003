import { z } from "zod";
import { parseEnv } from "../config/parse-env.ts";
import { databaseEnv, directDatabaseUrl } from "../config/shared-env.schema.ts";
import { prepareDatabase } from "./prepare-database.ts";

const env = parseEnv(z.object(databaseEnv), process.env);
// Migrations take a session-level advisory lock: straight to Postgres, never through a pooler.
const databaseUrl = directDatabaseUrl(env);
const result = await prepareDatabase(databaseUrl);
const where = new URL(databaseUrl);
console.log(`database ${where.host}${where.pathname}: ${result.created ? "created, " : ""}${result.applied}`);
