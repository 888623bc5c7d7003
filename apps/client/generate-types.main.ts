// Regenerates apps/client/openapi-types.ts from the OpenAPI document the API serves (the same zod
// schemas): `npm run client:generate`. test/api/openapi-contract.test.ts fails when the committed
// file differs from what this writes, so the client cannot drift from the API.
import { writeFile } from "node:fs/promises";
import { generateClientTypes } from "./generate-types.ts";

const target = new URL("./openapi-types.ts", import.meta.url);
await writeFile(target, await generateClientTypes());
console.log(`wrote ${target.pathname}`);
