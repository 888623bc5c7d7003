import { createReadStream, createWriteStream } from "node:fs";
import { mkdtemp, open, readdir, readFile, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { pipeline } from "node:stream/promises";
import { parse as parseCsv } from "csv-parse";
import { usageError } from "./exit-codes.ts";

export type InputKind = "folder" | "csv" | "ndjson";
export type InputSource = { kind: InputKind; path: string; label: string };
// One batch item as sent, and what to call it when the API refuses it.
export type InputItem = { item: Record<string, unknown>; label: string };

const imageExtensions = new Set([".png", ".jpg", ".jpeg"]);
const isUrl = (value: string) => /^https?:\/\//i.test(value.trim());

// `-` is spooled to a temporary file first: the input is read twice (once to derive the
// Idempotency-Key from its content, once to upload it) and a pipe can be read only once.
export const resolveInput = async (arg: string, format: InputKind | undefined): Promise<InputSource> => {
  if (arg === "-") {
    const dir = await mkdtemp(path.join(tmpdir(), "kling-expand-stdin-"));
    const file = path.join(dir, "stdin");
    await pipeline(process.stdin, createWriteStream(file));
    return { kind: format ?? (await sniffFormat(file)), path: file, label: "standard input" };
  }
  let info;
  try {
    info = await stat(arg);
  } catch {
    throw usageError(`Cannot read ${arg}: no such file or folder.`);
  }
  if (info.isDirectory()) return { kind: "folder", path: arg, label: arg };
  const ext = path.extname(arg).toLowerCase();
  const kind = format ?? (ext === ".csv" ? "csv" : ext === ".ndjson" || ext === ".jsonl" ? "ndjson" : undefined);
  if (!kind) throw usageError(`Cannot tell the format of ${arg}: name it .csv or .ndjson, or pass --format csv|ndjson.`);
  return { kind, path: arg, label: arg };
};

const sniffFormat = async (file: string): Promise<InputKind> => {
  const handle = await open(file);
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(256), 0, 256, 0);
    return buffer.subarray(0, bytesRead).toString("utf8").trimStart().startsWith("{") ? "ndjson" : "csv";
  } finally {
    await handle.close();
  }
};

// A local image becomes inline Base64 with its path as written as the item's `input_name` (the
// API keeps it: the manifest's `input` and the downloaded results are named after it); a URL (or
// anything else, which the API then judges) is sent as it is. Relative paths in a CSV or NDJSON
// file are relative to that file. An item's own input_name wins.
const withInlineImage = async (item: Record<string, unknown>, baseDir: string): Promise<Record<string, unknown>> => {
  const value = item.image;
  if (typeof value !== "string" || value === "" || isUrl(value)) return item;
  const candidate = path.resolve(baseDir, value);
  try {
    if ((await stat(candidate)).isFile()) return { ...item, image: (await readFile(candidate)).toString("base64"), input_name: item.input_name ?? inputNameOf(value) };
  } catch {
    // Not a file: left for the API to judge (raw Base64 is valid there).
  }
  return item;
};

// The API takes a name of one line, at most 255 characters: a longer path keeps its end (the
// file's own name, which results are named after).
const inputNameOf = (written: string) => {
  const oneLine = written.replace(/[\u0000-\u001f\u007f-\u009f]/g, "_");
  const chars = [...oneLine];
  return chars.length <= 255 ? oneLine : chars.slice(-255).join("");
};

const folderItems = async function* (dir: string): AsyncGenerator<InputItem> {
  const names = (await readdir(dir, { withFileTypes: true }))
    .filter((e) => e.isFile() && imageExtensions.has(path.extname(e.name).toLowerCase()))
    .map((e) => e.name)
    .sort();
  if (names.length === 0) throw usageError(`No .png, .jpg or .jpeg images in ${dir}.`);
  for (const name of names) yield { item: { image: (await readFile(path.join(dir, name))).toString("base64"), input_name: inputNameOf(name) }, label: name };
};

const ndjsonItems = async function* (file: string): AsyncGenerator<InputItem> {
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  let n = 0;
  for await (const line of lines) {
    n++;
    if (line.trim() === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw usageError(`${file} line ${n} is not valid JSON.`);
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw usageError(`${file} line ${n} is not a JSON object.`);
    const item = value as Record<string, unknown>;
    const label = typeof item.image === "string" && item.image.length < 300 ? item.image : `${path.basename(file)} line ${n}`;
    yield { item: await withInlineImage(item, path.dirname(file)), label };
  }
};

// CSV cells are text: ratios become numbers (`n` may stay text, the API takes both); an empty cell
// means "use the batch default". `url`, `path` and `file` are accepted as the image column.
const csvItems = async function* (file: string): AsyncGenerator<InputItem> {
  const parser = createReadStream(file).pipe(parseCsv({ columns: true, skip_empty_lines: true, trim: true, bom: true }));
  let row = 1;
  try {
    for await (const record of parser as AsyncIterable<Record<string, string>>) {
      row++;
      const item: Record<string, unknown> = {};
      for (const [column, cell] of Object.entries(record)) {
        if (cell === "") continue;
        const field = ["url", "path", "file"].includes(column) ? "image" : column;
        item[field] = field.endsWith("_expansion_ratio") && /^-?\d+(\.\d+)?$/.test(cell) ? Number(cell) : cell;
      }
      const label = typeof item.image === "string" && item.image.length < 300 ? item.image : `${path.basename(file)} row ${row}`;
      yield { item: await withInlineImage(item, path.dirname(file)), label };
    }
  } catch (error) {
    if ((error as { code?: string }).code?.startsWith("CSV_")) throw usageError(`${file} is not valid CSV: ${(error as Error).message}`);
    throw error;
  }
};

export const readItems = (source: InputSource): AsyncGenerator<InputItem> =>
  source.kind === "folder" ? folderItems(source.path) : source.kind === "csv" ? csvItems(source.path) : ndjsonItems(source.path);
