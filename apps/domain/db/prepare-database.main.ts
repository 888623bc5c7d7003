import { z } from "zod";
import { parseEnv } from "../config/parse-env.ts";
import { databaseEnv } from "../config/shared-env.schema.ts";
import { prepareDatabase } from "./prepare-database.ts";

const env = parseEnv(z.object(databaseEnv), process.env);
const result = await prepareDatabase(env.DATABASE_URL);
const where = new URL(env.DATABASE_URL);
console.log(`database ${where.host}${where.pathname}: ${result.created ? "created, " : ""}${result.applied}`);
