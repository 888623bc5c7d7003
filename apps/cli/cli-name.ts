import { accessSync, constants } from "node:fs";
import path from "node:path";

// The command that runs this CLI again, as the person ran it, so that every hint it prints works
// when pasted: `npm run cli --` from the repository (the bin is not on the PATH there), `npx
// kling-expand` through npx, `kling-expand` when that bin is on the PATH, else node and the script.
export const cliCommand = (env: NodeJS.ProcessEnv = process.env, script: string | undefined = process.argv[1], cwd = process.cwd()): string => {
  if (env.npm_lifecycle_event === "cli") return "npm run cli --";
  if (env.npm_lifecycle_event === "npx") return "npx kling-expand";
  const onPath = (env.PATH ?? "").split(path.delimiter).some((dir) => {
    if (!dir) return false;
    try {
      accessSync(path.join(dir, "kling-expand"), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
  if (onPath) return "kling-expand";
  if (!script) return "npm run cli --";
  const relative = path.relative(cwd, script);
  const shown = relative && !relative.startsWith("..") ? relative : script;
  return `node ${/\s/.test(shown) ? JSON.stringify(shown) : shown}`;
};

// A folder argument as it can be pasted back into a shell.
export const shellWord = (value: string) => (/^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replaceAll("'", "'\\''")}'`);
