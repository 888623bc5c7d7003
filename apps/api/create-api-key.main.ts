import { parseArgs } from "node:util";
import { z } from "zod";
import { addApiKey, createAccountWithKey, revokeApiKey } from "../domain/account/api-key.ts";
import { parseEnv } from "../domain/config/parse-env.ts";
import { databaseEnv } from "../domain/config/shared-env.schema.ts";
import { createDb } from "../domain/db/database.ts";

// npm run api-key:create -- --name acme            (a new account and its first key)
// npm run api-key:create -- --account <account id> (one more key for an existing account)
// npm run api-key:create -- --revoke <key>         (the key stops working within seconds)
// The key is printed once; only its SHA-256 is stored.
const { values } = parseArgs({
  options: { name: { type: "string" }, account: { type: "string" }, label: { type: "string" }, revoke: { type: "string" } },
});
if (!values.name && !values.account && !values.revoke) {
  console.error("usage: npm run api-key:create -- --name <account name> | --account <account id> [--label <text>] | --revoke <key>");
  process.exit(64);
}
const env = parseEnv(z.object(databaseEnv), process.env);
const db = createDb(env.DATABASE_URL);
try {
  if (values.revoke) {
    const revoked = await revokeApiKey(db, values.revoke);
    console.log(JSON.stringify({ revoked }));
    if (!revoked) process.exitCode = 1;
  } else if (values.account) {
    const key = await addApiKey(db, values.account, undefined, values.label);
    console.log(JSON.stringify({ account_id: values.account, api_key: key }));
  } else {
    const { accountId, key } = await createAccountWithKey(db, values.name!, undefined, values.label);
    console.log(JSON.stringify({ account_id: accountId, api_key: key }));
  }
} finally {
  await db.destroy();
}
