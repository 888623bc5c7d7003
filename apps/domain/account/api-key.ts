import { createHash, randomBytes } from "node:crypto";
import { v7 as uuidv7 } from "uuid";
import type { Db } from "../db/prisma-client.ts";

// Only a SHA-256 of each key is stored. Keys are long random strings, so a fast hash is enough (no
// password stretching needed) and lookups stay one indexed read.
export const hashApiKey = (key: string) => createHash("sha256").update(key, "utf8").digest("hex");

export const generateApiKey = () => `kx_${randomBytes(24).toString("base64url")}`;

export const findAccountIdByApiKey = async (db: Db, key: string): Promise<string | undefined> => {
  const row = await db.apiKey.findUnique({ where: { keyHash: hashApiKey(key) }, select: { accountId: true } });
  return row?.accountId;
};

export const createAccountWithKey = async (db: Db, name: string, key = generateApiKey(), label?: string) => {
  const accountId = uuidv7();
  await db.account.create({
    data: { id: accountId, name, apiKeys: { create: { id: uuidv7(), keyHash: hashApiKey(key), label } } },
  });
  return { accountId, key };
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
    if (raced) return raced;
    throw error;
  }
};
