import { createHash, randomBytes } from "node:crypto";
import { v7 as uuidv7 } from "uuid";
import type { Db } from "../db/database.ts";
import { isUniqueViolation } from "../errors/dependency-errors.ts";

// Only a SHA-256 of each key is stored. Keys are long random strings, so a fast hash is enough (no
// password stretching needed) and lookups stay one indexed read.
export const hashApiKey = (key: string) => createHash("sha256").update(key, "utf8").digest("hex");

export const generateApiKey = () => `kx_${randomBytes(24).toString("base64url")}`;

export const findAccountIdByApiKey = async (db: Db, key: string): Promise<string | undefined> => {
  const row = await db
    .selectFrom("apiKey")
    .select("accountId")
    .where("keyHash", "=", hashApiKey(key))
    .where("revokedAt", "is", null)
    .executeTakeFirst();
  return row?.accountId;
};

export const createAccount = async (db: Db, name: string): Promise<string> => {
  const accountId = uuidv7();
  await db.insertInto("account").values({ id: accountId, name }).execute();
  return accountId;
};

export const addApiKey = async (db: Db, accountId: string, key = generateApiKey(), label?: string) => {
  await db.insertInto("apiKey").values({ id: uuidv7(), accountId, keyHash: hashApiKey(key), label: label ?? null }).execute();
  return key;
};

export const createAccountWithKey = async (db: Db, name: string, key = generateApiKey(), label?: string) =>
  db.transaction().execute(async (tx) => {
    const accountId = await createAccount(tx, name);
    await addApiKey(tx, accountId, key, label);
    return { accountId, key };
  });

// Revoked keys stop working within the authenticator's cache lifetime, in every API process.
export const revokeApiKey = async (db: Db, key: string): Promise<boolean> => {
  const result = await db
    .updateTable("apiKey")
    .set({ revokedAt: new Date() })
    .where("keyHash", "=", hashApiKey(key))
    .where("revokedAt", "is", null)
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
};

// BOOTSTRAP_API_KEY: makes sure an account with this key exists (local runs, demos, tests).
export const ensureBootstrapAccount = async (db: Db, key: string): Promise<string> => {
  const existing = await findAccountIdByApiKey(db, key);
  if (existing) return existing;
  try {
    return (await createAccountWithKey(db, "bootstrap", key, "BOOTSTRAP_API_KEY")).accountId;
  } catch (error) {
    // Several processes starting together race on the unique key hash; the loser reads the winner's.
    const raced = await findAccountIdByApiKey(db, key);
    if (raced && isUniqueViolation(error)) return raced;
    throw error;
  }
};
