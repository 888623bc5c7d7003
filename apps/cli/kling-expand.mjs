#!/usr/bin/env node
// The `kling-expand` bin: loads the TypeScript CLI through tsx from this package, wherever it is run.
import { register } from "tsx/esm/api";

register();
await import("./main.ts");
