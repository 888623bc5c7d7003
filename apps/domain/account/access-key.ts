import { randomBytes } from "node:crypto";
import { v7 as uuidv7 } from "uuid";
import type { Db } from "../db/database.ts";
import { decryptSecret, encryptSecret, type ServerKey } from "../crypto/server-key.ts";
import { isUniqueViolation } from "../errors/dependency-errors.ts";

// Kling's official scheme (KLING.md "Auth"): the client holds an access key and a secret key and
// sends `Authorization: Bearer <JWT>`, HS256, iss = access key. Verifying needs the secret itself,
// so it is stored sealed under a key derived from SERVER_KEY.
export type AccessKeyPair = { accessKey: string; secretKey: string };

export const generateAccessKeyPair = (): AccessKeyPair => ({
  accessKey: `ak_${randomBytes(16).toString("base64url")}`,
  secretKey: `sk_${randomBytes(32).toString("base64url")}`,
});

const sealingKey = (serverKey: ServerKey) => serverKey.derive("access-key-secrets");

export const addAccessKey = async (db: Db, serverKey: ServerKey, accountId: string, pair = generateAccessKeyPair(), label?: string) => {
  await db
    .insertInto("accessKey")
    .values({
      id: uuidv7(),
      accountId,
      accessKey: pair.accessKey,
      secretEncrypted: encryptSecret(sealingKey(serverKey), pair.secretKey, pair.accessKey),
      label: label ?? null,
    })
    .execute();
  return pair;
};

export const revokeAccessKey = async (db: Db, accessKey: string): Promise<boolean> => {
  const result = await db
    .updateTable("accessKey")
    .set({ revokedAt: new Date() })
    .where("accessKey", "=", accessKey)
    .where("revokedAt", "is", null)
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
};

// The stored secret does not open with this server's key: SERVER_KEY is not the one it was sealed
// under (or the row was altered). A fault of the installation, not of the client's credential.
export class SealedSecretUnreadable extends Error {
  constructor(
    readonly accessKey: string,
    cause: unknown,
  ) {
    super(`the secret of access key ${accessKey} does not decrypt: SERVER_KEY is not the one it was sealed under`, { cause });
  }
}

// The account and the secret of a live access key; undefined when unknown or revoked.
export const findAccessKey = async (db: Db, serverKey: ServerKey, accessKey: string) => {
  const row = await db
    .selectFrom("accessKey")
    .select(["accountId", "secretEncrypted"])
    .where("accessKey", "=", accessKey)
    .where("revokedAt", "is", null)
    .executeTakeFirst();
  if (!row) return undefined;
  try {
    return { accountId: row.accountId, secretKey: decryptSecret(sealingKey(serverKey), row.secretEncrypted, accessKey) };
  } catch (error) {
    throw new SealedSecretUnreadable(accessKey, error);
  }
};

// BOOTSTRAP_ACCESS_KEY + BOOTSTRAP_SECRET_KEY: makes sure the pair exists for the bootstrap account.
export const ensureBootstrapAccessKey = async (db: Db, serverKey: ServerKey, accountId: string, pair: AccessKeyPair) => {
  const existing = await findAccessKey(db, serverKey, pair.accessKey);
  if (existing) {
    if (existing.accountId !== accountId || existing.secretKey !== pair.secretKey) {
      throw new Error("BOOTSTRAP_ACCESS_KEY exists with another account or secret; revoke it first or choose another");
    }
    return;
  }
  try {
    await addAccessKey(db, serverKey, accountId, pair, "BOOTSTRAP_ACCESS_KEY");
  } catch (error) {
    if (!isUniqueViolation(error)) throw error;
  }
};
