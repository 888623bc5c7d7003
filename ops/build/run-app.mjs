// Runs one program from the build, building first if a source changed: what the npm scripts run,
//   node ops/build/run-app.mjs apps/api/main.ts [arguments]
// In this process (no second one between the caller and the app): the app gets this pid, its
// signals and its arguments, as if it had been started itself.
import { pathToFileURL } from "node:url";
import { builtEntry, ensureBuilt } from "./build-apps.mjs";

const entry = process.argv[2];
if (!entry) {
  console.error("usage: node ops/build/run-app.mjs <entry point, e.g. apps/api/main.ts> [arguments]");
  process.exit(64);
}
await ensureBuilt();
// Stack traces in the .ts sources, as `node --enable-source-maps` gives them.
process.setSourceMapsEnabled(true);
process.argv.splice(1, 2, builtEntry(entry));
await import(pathToFileURL(builtEntry(entry)).href);
