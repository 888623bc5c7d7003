// The programs run from a build, not from their TypeScript through tsx: under `--import tsx` every
// module (node_modules included) crosses tsx's loader thread, which doubled what loading costs
// (docs/testing.md "Where the time goes"). esbuild bundles each entry point's own code into a few
// files in dist/; packages stay imports of node_modules. Plain JavaScript, so that checking and
// building needs no TypeScript loader itself.
//
// `node ops/build/build-apps.mjs` builds if a source changed (the Dockerfile and the tests' global
// setup); ops/build/run-app.mjs does the same before it runs an entry point (the npm scripts).
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
export const buildDir = path.join(repoRoot, "dist");

// Every program someone runs: the deployed apps, `npm start`, the one-off commands and the CLI.
export const entryPoints = [
  "apps/api/main.ts",
  "apps/worker/main.ts",
  "apps/simulator/main.ts",
  "apps/local-stack/main.ts",
  "apps/domain/db/prepare-database.main.ts",
  "apps/api/create-api-key.main.ts",
  "apps/api/access-key.main.ts",
  "apps/cli/main.ts",
];

// dist/ mirrors the source tree: apps/api/main.ts runs as dist/apps/api/main.js.
export const builtEntry = (entry) => path.join(buildDir, entry.replace(/\.ts$/, ".js"));

// What the build reads: every file under apps/ (a .lua or .html beside the code is read from the
// source tree at run time, but a rebuild for it costs little), the build itself and the package
// and TypeScript settings esbuild follows. Names, sizes and modification times: a stat each, a few
// milliseconds for the ~300 files, so every start can afford it.
const inputs = () => {
  const files = [];
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else files.push(full);
    }
  };
  walk(path.join(repoRoot, "apps"));
  walk(path.dirname(fileURLToPath(import.meta.url)));
  files.push(path.join(repoRoot, "package.json"), path.join(repoRoot, "tsconfig.json"), path.join(repoRoot, "tsconfig.base.json"));
  return files.sort();
};

const fingerprintOf = (files) => {
  // The build holds this checkout's absolute paths (each module's own URL), so a copy elsewhere rebuilds.
  const hash = createHash("sha256").update(`${repoRoot}\n`);
  for (const file of files) {
    const stat = statSync(file);
    hash.update(`${path.relative(repoRoot, file)}\0${stat.size}\0${stat.mtimeMs}\n`);
  }
  return hash.digest("hex");
};

const stampFile = path.join(buildDir, ".stamp");
const readStamp = () => {
  try {
    return readFileSync(stampFile, "utf8");
  } catch {
    return undefined;
  }
};

// Each bundled file's `import.meta.url` becomes that source file's own URL, so what a module finds
// next to itself (Lua scripts, the dashboard's files, the repository root) is found in the source
// tree as it is under tsx, wherever its code lands in dist/.
// (A text replacement: the token is spelled out of parts here so that this file, bundled into the
// stack, does not replace its own string.)
const metaUrl = ["import", "meta", "url"].join(".");
const ownImportMetaUrl = {
  name: "own-import-meta-url",
  setup(build) {
    build.onLoad({ filter: /\.(ts|mjs)$/ }, (args) => {
      if (args.path.includes(`${path.sep}node_modules${path.sep}`)) return undefined;
      const source = readFileSync(args.path, "utf8");
      const contents = source.includes(metaUrl) ? source.replaceAll(metaUrl, JSON.stringify(pathToFileURL(args.path).href)) : source;
      return { contents, loader: args.path.endsWith(".ts") ? "ts" : "js" };
    });
  },
};

// Written beside its final name and renamed over it: a process starting meanwhile (another
// `npm start`, a test's spawn) reads either the old file or the new one, never half of one.
const writeAtomically = (file, contents) => {
  mkdirSync(path.dirname(file), { recursive: true });
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, contents);
  renameSync(temporary, file);
};

// Chunks of earlier builds that this one no longer writes, once old enough that no process started
// from that build can still be about to import one (a lazily imported part such as the S3 client).
const STALE_CHUNK_AGE_MS = 60 * 60_000;
const removeStaleFiles = (written) => {
  const walk = (dir) => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (!written.has(full) && full !== stampFile && Date.now() - statSync(full).mtimeMs > STALE_CHUNK_AGE_MS) unlinkSync(full);
    }
  };
  walk(buildDir);
};

export const build = async (fingerprint = fingerprintOf(inputs())) => {
  // Imported only when a build is due (the version tsx brings too, pinned in package.json).
  const esbuild = await import("esbuild");
  // esbuild answers through a service child (`esbuild --service --ping`) that it keeps for later
  // calls; no later call comes, so it is stopped once this build is done instead of living as long
  // as the process that built (`npm start`'s run-app, the tests' global setup). A later call in the
  // same process would start a new one; one in flight would fail, and callers build one at a time
  // (vitest runs the projects' global setups in turn).
  let result;
  try {
    result = await esbuild.build({
      absWorkingDir: repoRoot,
      entryPoints: entryPoints.map((entry) => path.join(repoRoot, entry)),
      outbase: repoRoot,
      outdir: buildDir,
      bundle: true,
      packages: "external",
      platform: "node",
      format: "esm",
      target: "node20",
      // A module imported lazily (the S3 client, Prisma's client, the CLI's commands) stays a file
      // of its own, so its packages are still loaded only when it is.
      splitting: true,
      chunkNames: "chunks/[name]-[hash]",
      // Stack traces name the .ts files and lines (Node reads the maps when started with
      // --enable-source-maps); the sources themselves are in the tree, not copied into the maps.
      sourcemap: "linked",
      sourcesContent: false,
      // No keepNames: it wraps every function, closures made per request included, in `__name(...)`
      // (a defineProperty each time), and the API's status p99 at half its peak went from 34-37 ms
      // (through tsx) to 74-134 ms with it, 30-36 ms without (docs/benchmarks.md). Bundling renames a
      // name only where two clash; no class does (an error's name in the logs is its own), and stack
      // traces map back to the .ts names through the source maps.
      keepNames: false,
      plugins: [ownImportMetaUrl],
      write: false,
      logLevel: "warning",
    });
  } finally {
    await esbuild.stop();
  }
  const written = new Set();
  // Chunks before the entry points that import them: a process starting during a rebuild finds
  // every chunk its entry names (a chunk's name is its content's hash, so an old one never changes).
  const chunksFirst = [...result.outputFiles].sort((a, b) => Number(!a.path.includes(`${path.sep}chunks${path.sep}`)) - Number(!b.path.includes(`${path.sep}chunks${path.sep}`)));
  for (const file of chunksFirst) {
    writeAtomically(file.path, file.contents);
    written.add(file.path);
  }
  removeStaleFiles(written);
  writeAtomically(stampFile, fingerprint);
};

// Builds when a source changed since the last build, so editing a .ts file and running again
// runs the edit, as it did under tsx. Returns whether it built.
export const ensureBuilt = async () => {
  const fingerprint = fingerprintOf(inputs());
  if (readStamp() === fingerprint) return false;
  await build(fingerprint);
  return true;
};

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const built = await ensureBuilt();
  console.log(built ? `built ${entryPoints.length} entry points into ${path.relative(process.cwd(), buildDir) || "."}` : "build up to date");
}
