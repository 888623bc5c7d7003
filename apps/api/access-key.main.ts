import { parseArgs } from "node:util";
import { z } from "zod";
import { addAccessKey, revokeAccessKey } from "../domain/account/access-key.ts";
import { parseEnv } from "../domain/config/parse-env.ts";
import { resolveServerKey, secretsEnv } from "../domain/config/secrets-env.schema.ts";
import { databaseEnv } from "../domain/config/shared-env.schema.ts";
import { createDb } from "../domain/db/database.ts";

// Kling-style credentials for clients that sign their own JWTs (HS256, iss = access key):
// npm run access-key -- --account <account id> [--label <text>]   prints the pair once
// npm run access-key -- --revoke <access key>                      stops it within seconds
// The secret is stored sealed under SERVER_KEY (the API must run with the same one).
const { values } = parseArgs({ options: { account: { type: "string" }, label: { type: "string" }, revoke: { type: "string" } } });
if (!values.account && !values.revoke) {
  console.error("usage: npm run access-key -- --account <account id> [--label <text>] | --revoke <access key>");
  process.exit(64);
}
const env = parseEnv(z.object({ ...databaseEnv, ...secretsEnv }), process.env);
const db = createDb(env.DATABASE_URL);
try {
  if (values.revoke) {
    const revoked = await revokeAccessKey(db, values.revoke);
    console.log(JSON.stringify({ revoked }));
    if (!revoked) process.exitCode = 1;
  } else {
    const pair = await addAccessKey(db, await resolveServerKey(env), values.account!, undefined, values.label);
    console.log(JSON.stringify({ account_id: values.account, access_key: pair.accessKey, secret_key: pair.secretKey }));
  }
} finally {
  await db.destroy();
}
