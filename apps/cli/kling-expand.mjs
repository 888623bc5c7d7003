#!/usr/bin/env node
// The `kling-expand` bin: runs the CLI from this package's build (ops/build), building it first if
// a source changed, wherever it is run. process.argv stays this script's, so the CLI's hints name
// the command the person typed.
import { pathToFileURL } from "node:url";
import { builtEntry, ensureBuilt } from "../../ops/build/build-apps.mjs";

await ensureBuilt();
// Stack traces in the .ts sources.
process.setSourceMapsEnabled(true);
await import(pathToFileURL(builtEntry("apps/cli/main.ts")).href);
