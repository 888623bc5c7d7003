import { sql } from "kysely";
import type { Db } from "../db/database.ts";

// An account's spending against its cap: credits charged by the provider so far plus what its
// unfinished tasks will cost (n images each). One query per batch, not per item.
export const accountSpend = async (db: Db, accountId: string, creditsPerImage: number) => {
  const row = await db
    .selectFrom("task")
    .select([
      sql<string>`coalesce(sum(case when final_unit_deduction ~ '^[0-9]+(\\.[0-9]+)?$' then final_unit_deduction::numeric else 0 end), 0)`.as("spent"),
      sql<string>`coalesce(sum(n) filter (where status not in ('succeeded', 'failed', 'canceled')), 0)`.as("committedImages"),
    ])
    .where("accountId", "=", accountId)
    .executeTakeFirstOrThrow();
  return { spent: Number(row.spent), committed: Number(row.committedImages) * creditsPerImage };
};

// The account's own cap, else the installation's default; undefined: no cap.
export const spendCapOf = async (db: Db, accountId: string, defaultCap: number | undefined) => {
  const account = await db.selectFrom("account").select("spendCapCredits").where("id", "=", accountId).executeTakeFirst();
  return account?.spendCapCredits ?? defaultCap;
};

// How long a batch would take at the account's capacity: its images and the account's unfinished
// ones ahead of it go through `capacity` slots, one provider run time per wave.
export const estimateDurationSeconds = (images: number, backlogImages: number, capacity: number, runMs: number) =>
  capacity <= 0 ? null : Math.ceil(Math.ceil((images + backlogImages) / capacity) * runMs / 1000);
