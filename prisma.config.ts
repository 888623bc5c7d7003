import { defineConfig } from "prisma/config";
import { PrismaPg } from "@prisma/adapter-pg";
import { defaultDatabaseUrl } from "./apps/domain/config/defaults.ts";

// schema.prisma names env("DATABASE_URL"); without a value Prisma 6 cannot read the schema and falls
// back to downloading the Rust query engine, which fails offline. The local default keeps
// `prisma generate` working on a fresh machine.
process.env.DATABASE_URL ??= defaultDatabaseUrl;
// No generator here uses the Rust query engine (the apps query through Kysely; prisma-kysely only
// writes types; the Prisma Client generated for the receiver's measured variant is engineType
// "client", over the pg adapter), but the CLI would still try to download it unless told so.
process.env.PRISMA_CLIENT_ENGINE_TYPE ??= "client";

// The JavaScript schema engine is the only one that works offline (see STACK.md): Prisma's native
// schema-engine binary would be downloaded at start-up.
export default defineConfig({
  experimental: { adapter: true },
  engine: "js",
  schema: "prisma/schema.prisma",
  migrations: { path: "prisma/migrations" },
  adapter: async () => new PrismaPg({ connectionString: process.env.DATABASE_URL }),
});
