import { randomBytes } from "node:crypto";
import { sql } from "kysely";
import { decryptSecret, encryptSecret, type ServerKey } from "../crypto/server-key.ts";
import type { Db } from "../db/database.ts";

// Each account signs its outbound callbacks with a secret of its own (Standard Webhooks: whsec_ +
// base64 of 24 random bytes), stored sealed under a key derived from SERVER_KEY and bound to the
// account, so a sealed value copied onto another account's row does not open.
export type SigningSecrets = {
  current: string;
  // The secret before the last rotation while it still signs (both signatures are sent), else null.
  previous: string | null;
  previousUntil: Date | null;
  rotatedAt: Date;
};

export type SealedSigningSecrets = {
  currentSealed: string;
  previousSealed: string | null;
  previousUntil: Date | null;
  rotatedAt: Date;
};

export const newWebhookSecret = () => `whsec_${randomBytes(24).toString("base64")}`;

const sealingKey = (serverKey: ServerKey) => serverKey.derive("outbound-webhooks");
const boundTo = (accountId: string) => `webhook-secret:${accountId}`;

// Every attempt opens its account's secrets (a callback's path, before its POST): each sealed value
// is opened once per sealing key and account, and kept. The key names the account, so a sealed
// value copied onto another account's row is opened (and refused) afresh. A rotation seals a new
// value (a new IV), so a kept one is never stale; bounded, emptied when full.
const MAX_OPENED = 10_000;
const opened = new WeakMap<Buffer, Map<string, string>>();
const openSealed = (key: Buffer, sealed: string, accountId: string) => {
  let known = opened.get(key);
  if (!known) opened.set(key, (known = new Map()));
  const id = `${accountId}\u0000${sealed}`;
  let secret = known.get(id);
  if (secret === undefined) {
    secret = decryptSecret(key, sealed, boundTo(accountId));
    if (known.size >= MAX_OPENED) known.clear();
    known.set(id, secret);
  }
  return secret;
};

export const openSigningSecrets = (serverKey: ServerKey, accountId: string, row: SealedSigningSecrets, now = new Date()): SigningSecrets => {
  const live = row.previousSealed !== null && row.previousUntil !== null && row.previousUntil > now;
  return {
    current: openSealed(sealingKey(serverKey), row.currentSealed, accountId),
    previous: live ? openSealed(sealingKey(serverKey), row.previousSealed as string, accountId) : null,
    previousUntil: live ? row.previousUntil : null,
    rotatedAt: row.rotatedAt,
  };
};

// Made on first use (the first GET or the first delivery); two processes racing agree on one.
export const ensureSigningSecrets = async (db: Db, serverKey: ServerKey, accountId: string): Promise<SigningSecrets> => {
  await db
    .insertInto("webhookSigningSecret")
    .values({ accountId, currentSealed: encryptSecret(sealingKey(serverKey), newWebhookSecret(), boundTo(accountId)) })
    .onConflict((oc) => oc.column("accountId").doNothing())
    .execute();
  const row = await db
    .selectFrom("webhookSigningSecret")
    .select(["currentSealed", "previousSealed", "previousUntil", "rotatedAt"])
    .where("accountId", "=", accountId)
    .executeTakeFirstOrThrow();
  return openSigningSecrets(serverKey, accountId, row);
};

// A new current secret; the one it replaces keeps signing for the grace period (a secret older than
// that is dropped at once, as is the previous one of a rotation made during a grace period).
export const rotateSigningSecret = async (db: Db, serverKey: ServerKey, accountId: string, graceSeconds: number): Promise<SigningSecrets> => {
  await ensureSigningSecrets(db, serverKey, accountId);
  const row = await db
    .updateTable("webhookSigningSecret")
    .set((eb) => ({
      previousSealed: eb.ref("currentSealed"),
      previousUntil: sql<Date>`now() + make_interval(secs => ${graceSeconds})`,
      currentSealed: encryptSecret(sealingKey(serverKey), newWebhookSecret(), boundTo(accountId)),
      rotatedAt: sql<Date>`now()`,
    }))
    .where("accountId", "=", accountId)
    .returning(["currentSealed", "previousSealed", "previousUntil", "rotatedAt"])
    .executeTakeFirstOrThrow();
  return openSigningSecrets(serverKey, accountId, row);
};

// What signs a callback now: the current secret, and the previous one during its grace period.
export const secretsToSignWith = (secrets: SigningSecrets): string[] =>
  secrets.previous === null ? [secrets.current] : [secrets.current, secrets.previous];
