import { parseArgs } from "node:util";
import { z } from "zod";
import { createAccountWithKey, generateApiKey, hashApiKey } from "../domain/account/api-key.ts";
import { parseEnv } from "../domain/config/parse-env.ts";
import { databaseEnv } from "../domain/config/shared-env.schema.ts";
import { createDb } from "../domain/db/prisma-client.ts";
import { v7 as uuidv7 } from "uuid";

// npm run api-key:create -- --name acme            (a new account and its first key)
// npm run api-key:create -- --account <account id> (one more key for an existing account)
// The key is printed once; only its SHA-256 is stored.
const { values } = parseArgs({
  options: { name: { type: "string" }, account: { type: "string" }, label: { type: "string" } },
});
if (!values.name && !values.account) {
  console.error("usage: npm run api-key:create -- --name <account name> | --account <account id> [--label <text>]");
  process.exit(64);
}
const env = parseEnv(z.object(databaseEnv), process.env);
const db = createDb(env.DATABASE_URL);
try {
  if (values.account) {
    const key = generateApiKey();
    await db.apiKey.create({ data: { id: uuidv7(), accountId: values.account, keyHash: hashApiKey(key), label: values.label } });
    console.log(JSON.stringify({ account_id: values.account, api_key: key }));
  } else {
    const { accountId, key } = await createAccountWithKey(db, values.name!, undefined, values.label);
    console.log(JSON.stringify({ account_id: accountId, api_key: key }));
  }
} finally {
  await db.$disconnect();
}
