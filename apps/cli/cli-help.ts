import { exitCodeHelp } from "./exit-codes.ts";

const connection = `Connection (flags win over the environment):
  --api-url <url>   the orchestrator's API (env API_URL; default http://127.0.0.1:3000)
  --api-key <key>   an API key (env API_KEY; \`npm start\` prints the local one)`;

const expandOptions = `Expansion (batch defaults; an item of a CSV/NDJSON input may set its own):
  --up <ratio>      up_expansion_ratio, 0..2 times the height
  --down <ratio>    down_expansion_ratio, 0..2 times the height
  --left <ratio>    left_expansion_ratio, 0..2 times the width
  --right <ratio>   right_expansion_ratio, 0..2 times the width
                    (each defaults to 0; the provider requires (1+up+down)*(1+left+right) <= 3)
  --prompt <text>   what to paint in the new area (at most 2500 characters)
  --n <count>       images per input, 1..9 (default 1)
  --name <text>     the batch's name (default: the input's name)
  --callback-url <url>  the API calls this URL when the batch ends
  --format csv|ndjson   the input's format when it cannot be told from its name (stdin)`;

const inputHelp = `Input:
  <folder>          every .png/.jpg/.jpeg in it (not subfolders), sent inline, in name order
  <file.csv>        a header row naming the fields: image (or url/path/file), and any of
                    up_expansion_ratio, down_expansion_ratio, left_expansion_ratio,
                    right_expansion_ratio, prompt, n; empty cells use the batch defaults
  <file.ndjson>     one JSON object per line with the same fields
  -                 CSV or NDJSON on standard input
  An image is an http(s) URL (sent as is) or a local file (sent inline as Base64; relative paths
  are relative to the CSV/NDJSON file).`;

export const commandHelp: Record<string, string> = {
  submit: `Usage: kling-expand submit <folder | file.csv | file.ndjson | -> [options]

Uploads every item as ONE batch (streamed NDJSON to POST /v1/batches), then shows progress bars
until the batch ends. Ctrl-C stops watching; the batch keeps running (resume with \`watch\`).
Running the same submit again (same input content and options) does not create a second batch: it
sends the same Idempotency-Key and follows the first one.

${inputHelp}

${expandOptions}

Other:
  --no-watch        print the batch id and return at once
  --interval <ms>   how often progress is read (default 1000)

${connection}

Examples:
  kling-expand submit ./photos --up 0.2 --down 0.2 --left 0.3 --right 0.3
  kling-expand submit urls.csv --n 2 --prompt "a wider beach"
  cat items.ndjson | kling-expand submit - --left 0.5 --right 0.5`,
  estimate: `Usage: kling-expand estimate <folder | file.csv | file.ndjson | -> [options]

Validates every item without creating anything (POST /v1/batches?dry_run=true) and prints the item
count, refused items with their line, the credits the batch would cost and how long it would take
at the account's current capacity. Exit 0 when every item is valid, 1 when some are refused.

${inputHelp}

${expandOptions}

${connection}`,
  status: `Usage: kling-expand status <batch-id> [--json]

Prints the batch's progress once: counts by status, percent, ETA, credits. --json prints the API's
answer as it is. Exit 0 while running or when it completed, 1 when it ended with failures.

${connection}`,
  watch: `Usage: kling-expand watch <batch-id> [--interval <ms>]

Shows live progress bars (a plain line per change when stdout is not a terminal) until the batch
ends. Ctrl-C stops watching only. Exit 0 when every task succeeded, 1 otherwise.

${connection}`,
  download: `Usage: kling-expand download <batch-id> --out <dir> [--concurrency <n>]

Saves the batch's manifest (manifest.ndjson: one line per task with its input, status, images with
width, height and sha256, credits and error) and every stored image, named <line>_<index>.<ext>.
Each image is checked against the manifest's sha256 before it gets its final name, so running the
command again resumes: images already there and intact are skipped.

  --out <dir>         where to write (created if missing)
  --concurrency <n>   images fetched at once (default 4)

${connection}`,
  cancel: `Usage: kling-expand cancel <batch-id>

Cancels the batch: queued tasks are never submitted; tasks already at the provider finish.

${connection}`,
  retry: `Usage: kling-expand retry <batch-id> [--no-watch]

Runs the batch's failed tasks again (those whose failure may pass on a retry), then watches it.

${connection}`,
};

export const mainHelp = `kling-expand: bulk image expansion (outpainting) through the orchestrator's batch API.

Usage: kling-expand <command> [options]     (kling-expand <command> --help for details)

Commands:
  submit <input>          upload a folder, CSV or NDJSON as one batch and watch it to the end
  estimate <input>        dry run: validate, count, and price a batch without creating it
  status <batch-id>       progress once
  watch <batch-id>        live progress bars until the batch ends
  download <batch-id> --out <dir>   the manifest and every image, verified, resumable
  cancel <batch-id>       stop a batch (queued tasks are never submitted)
  retry <batch-id>        run the failed tasks again

${connection}

${exitCodeHelp}`;
