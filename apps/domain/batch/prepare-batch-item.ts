import { v7 as uuidv7 } from "uuid";
import { validationError, type FieldViolation } from "../errors/app-error.ts";
import { inspectSourceImage } from "../expand-request/source-image.ts";
import { SafeFetchError } from "../http/safe-fetch.ts";
import { sourceImageKey } from "../storage/local-storage.ts";
import { aboveCapacityMessage } from "../credits/credit-terms.ts";
import type { RawItem } from "./batch-item-sources.ts";
import { itemCredits, parseBatchItem, type BatchFields } from "./batch-request.schema.ts";
import { capViolation, rejectLine, type AcceptBatchDeps, type BatchIntakeResult, type Prepared } from "./batch-intake.ts";

// One item at a time, validated exactly as a single create: a bad one is counted on `result` by its
// line and gives undefined. `ledger` is the intake's first look at the account's spend.
export const itemPreparer = (
  deps: AcceptBatchDeps,
  input: { fields: BatchFields; dryRun: boolean },
  result: BatchIntakeResult,
  ledger: { cap: number | undefined; capBase: number },
) => {
  const { fields } = input;
  const { cap, capBase } = ledger;
  const room = cap ?? Infinity;
  const reject = (line: number, violations: FieldViolation[]) => rejectLine(result, line, violations);
  const callbackChecks = new Map<string, string | undefined>();

  const prepare = async (raw: RawItem): Promise<Prepared | undefined> => {
    if ("error" in raw) return void reject(raw.line, [{ field: "item", message: raw.error }]);
    const checked = parseBatchItem(fields.defaults, raw.value);
    if (!checked.ok) return void reject(raw.line, checked.violations);
    const request = checked.request;
    const imageRefusal = request.image.kind === "url" ? deps.imageUrlRefusal(request.image.url) : undefined;
    if (imageRefusal) return void reject(raw.line, [{ field: "image", message: imageRefusal }]);
    if (request.callbackUrl) {
      const refusal = await callbackRefusal(deps, callbackChecks, request.callbackUrl);
      if (refusal) return void reject(raw.line, [{ field: "callback_url", message: refusal }]);
    }
    if (request.n > deps.credits.maxRouteCapacity) return void reject(raw.line, [{ field: "n", message: aboveCapacityMessage(request.n, deps.credits.maxRouteCapacity) }]);
    const credits = itemCredits(request.n, deps.credits.perImage);
    // An early refusal from the first look; each chunk's hold decides for good (holdChunk). A dry
    // run reports the whole batch against the cap instead (the route's spend_cap.would_exceed).
    if (!input.dryRun && capBase + result.credits + credits > room) {
      result.spendCapReached = true;
      return void reject(raw.line, [capViolation(cap!, capBase + result.credits)]);
    }
    const id = uuidv7();
    let inline: Prepared["inline"];
    if (request.image.kind === "base64") {
      const bytes = Buffer.from(request.image.data, "base64");
      const check = await inspectSourceImage(bytes);
      if (!check.ok) return void reject(raw.line, [{ field: "image", message: check.reason }]);
      inline = { key: sourceImageKey(id, check.info.format), width: check.info.width, height: check.info.height };
      if (!input.dryRun) await deps.storage.put(inline.key, bytes);
      // The Base64 text is not kept past this point: only the stored key travels in the chunk.
      request.image = { kind: "base64", data: "" };
    }
    result.credits += credits;
    result.images += request.n;
    return { id, line: raw.line, request, inputName: checked.inputName, ...(inline ? { inline } : {}) };
  };
  return prepare;
};

export const refuseUnreachable = async (deps: AcceptBatchDeps, url: string, field: string) => {
  try {
    await deps.checkCallbackUrl(url);
  } catch (error) {
    if (error instanceof SafeFetchError && !error.retryable) throw validationError([{ field, message: error.publicReason }]);
  }
};

// Items' callback URLs are checked as a single create's are, once per distinct URL in a batch.
const callbackRefusal = async (deps: AcceptBatchDeps, seen: Map<string, string | undefined>, url: string) => {
  if (seen.has(url)) return seen.get(url);
  let refusal: string | undefined;
  try {
    await deps.checkCallbackUrl(url);
  } catch (error) {
    if (error instanceof SafeFetchError && !error.retryable) refusal = error.publicReason;
  }
  if (seen.size < 1_000) seen.set(url, refusal);
  return refusal;
};
