import type { IncomingMessage } from "node:http";
import { Router, type Request, type Response } from "express";
import { z } from "zod";
import { acceptBatch, BatchBrokenOffError } from "../../domain/batch/accept-batch.ts";
import type { BatchIntakeResult, BatchSource } from "../../domain/batch/batch-intake.ts";
import { ndjsonItems } from "../../domain/batch/batch-item-sources.ts";
import { csvItems } from "../../domain/batch/csv-batch-body.ts";
import { chunksSource, scanJsonBatchBody, type BatchBodySource } from "../../domain/batch/json-batch-body.ts";
import { jsonBatchBodySchema, MAX_JSON_ITEMS, streamedBatchQuerySchema } from "../../domain/batch/batch-request.schema.ts";
import { batchProgress, batchesProgress, findAccountBatch, listAccountBatches, listBatchTasks } from "../../domain/batch/batch.repository.ts";
import { cancelBatch, retryBatch } from "../../domain/batch/batch-control.ts";
import { planBatch, plannedCredits } from "../../domain/batch/plan-batch.ts";
import { AppError, validationError } from "../../domain/errors/app-error.ts";
import { claimIdempotencyKey, completeIdempotencyKey } from "../../domain/idempotency/idempotency-key.ts";
import { canonical, hashing } from "../../domain/idempotency/request-hash.ts";
import { taskStatuses } from "../../domain/task/task-status.ts";
import type { ApiDeps } from "../api-deps.ts";
import { authenticate } from "../middleware/authenticate.ts";
import { readJsonBodySpooled, takeSpooledBody } from "../middleware/body-intake.ts";
import { problemDetailsHandler } from "../middleware/error-handlers.ts";
import { claimStreamedKey, idempotencyKeyOf, jsonRequestHash, recordAnswer, refusal, replay, scopeOf, streamRequestHash } from "../middleware/idempotency.ts";
import { methodNotAllowed } from "../middleware/method-not-allowed.ts";
import { toBatchView, toDryRunView, toIntakeView } from "../../domain/batch/batch.presenter.ts";
import { openBatchFeed } from "../../domain/live-progress/batch-feed.ts";
import { uuidCursorSchema, pageLimitSchema } from "../../domain/db/keyset-page.ts";
import { streamFeed } from "./sse-stream.ts";
import { toNativeTask } from "../presenters/task.presenter.ts";
import { streamManifest } from "./batch-manifest.ts";
import { parseInput } from "./parse-request.ts";

// A JSON batch of 10,000 items with URLs is a few MB; inline images belong in the streamed forms.
const jsonLimitBytes = 32 * 1024 * 1024;

const jsonQuerySchema = z.strictObject(
  {
    atomic: z.enum(["true", "false", "1", "0"], { error: "must be true or false" }).optional(),
    dry_run: z.enum(["true", "false", "1", "0"], { error: "must be true or false" }).optional(),
  },
  { error: (issue) => (issue.code === "unrecognized_keys" ? "names a query parameter the JSON form does not take (batch fields go in the body)" : undefined) },
);
export const batchResultsQuerySchema = z.object({ format: z.enum(["ndjson", "csv"], { error: "must be ndjson or csv" }).optional() });
const truthy = (v: string | undefined) => v === "true" || v === "1";

export const batchListQuerySchema = z.object({
  cursor: uuidCursorSchema.optional(),
  limit: pageLimitSchema,
});
export const batchTasksQuerySchema = batchListQuerySchema.extend({ status: z.enum(taskStatuses).optional() });

// body-parser read an empty body as {} (then: items are required).
const emptyBody = chunksSource({ chunks: [Buffer.from("{}")], length: 2 });

// A body that is not a JSON object is rare and refused: read whole to say what it is, in the
// words every JSON route uses (error-handlers.ts).
const notAnObject = (body: BatchBodySource) => {
  let value: unknown;
  try {
    value = JSON.parse(body.read(0, body.length).toString("utf8").replace(/^\uFEFF/, ""));
  } catch {
    return validationError([{ field: "body", message: "is not valid JSON" }]);
  }
  if (Array.isArray(value)) return validationError([{ field: "body", message: "must be a JSON object {name, defaults, callback_url, items}" }]);
  const kind = value === null ? "null" : typeof value;
  return validationError([{ field: "body", message: `must be a JSON object; got ${kind === "string" ? "a string" : kind === "number" ? "a number" : kind === "boolean" ? "a boolean" : kind}` }]);
};

const mediaType = (req: IncomingMessage) => (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
const streamedSources: Record<string, BatchSource> = {
  "application/x-ndjson": "ndjson",
  "application/ndjson": "ndjson",
  "application/jsonl": "ndjson",
  "text/csv": "csv",
};

// An atomic batch with a bad item: nothing was created, and each bad line is named.
const atomicRefusal = (result: BatchIntakeResult) =>
  new AppError(
    "validation_failed",
    `${result.rejected} item(s) are invalid; nothing was created (atomic)`,
    { violations: result.errors.map((e) => ({ field: `line ${e.line}: ${e.field}`, message: e.message })) },
  );

// Upload incomplete: the batch exists with what was accepted. The key keeps that answer, so that a
// retry with it learns what happened instead of creating the same items again.
const keepBrokenOffAnswer = (deps: ApiDeps, ids: { accountId: string; key: string }, error: BatchBrokenOffError) =>
  completeIdempotencyKey(
    deps.db,
    { ...ids, requestHash: null },
    { status: error.httpStatus, body: { title: "Upload incomplete", status: error.httpStatus, detail: error.message, batch_id: error.batchId } },
  ).catch(() => undefined);

export const batchesRouter = (deps: ApiDeps): Router => {
  const router = Router();
  router.use(authenticate(deps.authenticator));
  // Streamed uploads being read by this process (BATCH_STREAMS_MAX).
  let streamsOpen = 0;
  const planDeps = { db: deps.db, providerRoutes: deps.providerRoutes, credits: deps.batches.credits, estimateRunMs: deps.batches.estimateRunMs };

  const answerIntake = async (res: Response, accountId: string, result: BatchIntakeResult, dryRun: boolean) => {
    if (dryRun) {
      res.status(200).json(toDryRunView(result, await planBatch(planDeps, accountId, result)));
      return;
    }
    if (!result.batchId) throw atomicRefusal(result);
    const batch = await findAccountBatch(deps.db, accountId, result.batchId);
    res
      .status(201)
      .location(`/v1/batches/${batch.id}`)
      .json({ ...toBatchView(await batchProgress(deps.db, batch)), intake: toIntakeView(result) });
  };

  const jsonReader = readJsonBodySpooled(deps.bodyBudget, {
    limit: jsonLimitBytes,
    instead: "send a larger batch as NDJSON (application/x-ndjson) or CSV (text/csv): those are read as they stream, with no size limit",
  });

  // The JSON form: its bytes wait on disk (body-spool.ts) and each item is parsed on its own
  // (json-batch-body.ts), so memory does not follow the body's size. The spooled body is closed
  // (and so removed) once the intake is done with it, before the answer is written (a client that
  // has its answer finds no copy left), and on every other path by the `finally`.
  const postJsonBatch = async (req: Request, res: Response, accountId: string, key: string | undefined) => {
    const { source, close } = takeSpooledBody(req.body);
    try {
      return await acceptJsonBatch(req, res, accountId, key, source, close);
    } finally {
      close();
    }
  };

  const acceptJsonBatch = async (req: Request, res: Response, accountId: string, key: string | undefined, given: BatchBodySource | undefined, doneWithBody: () => void) => {
    const query = parseInput(jsonQuerySchema, req.query);
    if (given === undefined) throw validationError([{ field: "body", message: "must be a JSON object {name, defaults, callback_url, items}" }]);
    const scanned = scanJsonBatchBody(given.length === 0 ? emptyBody : given, MAX_JSON_ITEMS + 1);
    if (scanned === "not_an_object") throw notAnObject(given);
    if (key !== undefined) {
      const requestHash = jsonRequestHash(req, (hash) => scanned.hashCanonical(hash, canonical));
      const claim = await claimIdempotencyKey(deps.db, { accountId, key, scope: scopeOf(req), requestHash }, deps.idempotency);
      if (claim.kind === "replay") {
        doneWithBody();
        return replay(res, claim.answer);
      }
      if (claim.kind !== "claimed") throw refusal(claim);
      recordAnswer(deps.db, res, { accountId, key, requestHash: () => requestHash });
    }
    // The items are checked for their count here, and one by one as they are accepted.
    const head = Object.fromEntries(scanned.fields);
    if (scanned.itemCount !== undefined) head.items = new Array<unknown>(scanned.itemCount);
    const body = parseInput(jsonBatchBodySchema, head);
    const dryRun = truthy(query.dry_run);
    const result = await acceptBatch(deps.batches, {
      accountId,
      source: "json",
      fields: { name: body.name, callback_url: body.callback_url, defaults: body.defaults },
      items: scanned.items(),
      atomic: truthy(query.atomic),
      dryRun,
      // Known up front: a batch over the spend cap is refused whole.
      plannedCredits: plannedCredits(body.defaults, body.items.length, (i) => scanned.item(i), deps.batches.credits.perImage),
    });
    doneWithBody();
    return answerIntake(res, accountId, result, dryRun);
  };

  // NDJSON or CSV, read as it streams: memory holds one chunk of items whatever the upload's size.
  const postStreamedBatch = async (req: Request, res: Response, accountId: string, key: string | undefined, source: BatchSource, type: string) => {
    const query = parseInput(streamedBatchQuerySchema, req.query);
    if (streamsOpen >= deps.batches.maxStreams) {
      throw new AppError("server_busy", `this server is reading ${streamsOpen} streamed batch uploads already; nothing was stored, retry in a few seconds`);
    }
    streamsOpen++;
    try {
      const hashed = { hash: streamRequestHash(req, type), digest: undefined as string | undefined };
      if (key !== undefined && (await claimStreamedKey(deps.db, deps.idempotency, req, res, { accountId, key }, hashed))) return;
      if (/100-continue/i.test(req.headers.expect ?? "")) res.writeContinue();
      const body = hashing(req as AsyncIterable<Buffer>, hashed.hash);
      try {
        const result = await acceptBatch(deps.batches, {
          accountId,
          source,
          fields: query.fields,
          items: source === "csv" ? csvItems(body) : ndjsonItems(body),
          atomic: query.atomic,
          dryRun: query.dryRun,
        });
        hashed.digest = hashed.hash.digest("hex");
        return await answerIntake(res, accountId, result, query.dryRun);
      } catch (error) {
        if (error instanceof BatchBrokenOffError && key !== undefined) await keepBrokenOffAnswer(deps, { accountId, key }, error);
        throw error;
      }
    } finally {
      streamsOpen--;
    }
  };

  router.post("/", jsonReader, async (req, res) => {
    const type = mediaType(req);
    const key = idempotencyKeyOf(req);
    if (type === "application/json" || /^application\/[\w.-]+\+json$/.test(type)) return postJsonBatch(req, res, res.locals.accountId, key);
    const source = streamedSources[type];
    if (!source) {
      throw new AppError("unsupported_media_type", "send the batch as application/json, application/x-ndjson or text/csv");
    }
    if ((req.headers["content-encoding"] ?? "identity").toLowerCase() !== "identity") {
      throw new AppError("unsupported_media_type", "a streamed batch must be sent without Content-Encoding");
    }
    return postStreamedBatch(req, res, res.locals.accountId, key, source, type);
  });

  router.get("/", async (req, res) => {
    const query = parseInput(batchListQuerySchema, req.query);
    const page = await listAccountBatches(deps.db, res.locals.accountId, query);
    const data = (await batchesProgress(deps.db, page.batches)).map(toBatchView);
    res.json({ data, next_cursor: page.nextCursor ?? null });
  });

  router.get("/:batchId", async (req, res) => {
    const batch = await findAccountBatch(deps.db, res.locals.accountId, req.params.batchId);
    res.json(toBatchView(await batchProgress(deps.db, batch)));
  });

  // Server-Sent Events: `batch` (as GET shows it) on connect and whenever its counts move; `end`
  // once it has ended. A resumed stream starts with a fresh snapshot.
  router.get("/:batchId/stream", (req, res) =>
    streamFeed(
      deps,
      req,
      res,
      () => openBatchFeed(deps.live, { accountId: res.locals.accountId, batchId: req.params.batchId as string }),
      (progress) => ({ event: "batch", data: toBatchView(progress) }),
      { event: "end", data: { reason: "the batch has ended" } },
    ),
  );

  router.get("/:batchId/tasks", async (req, res) => {
    const query = parseInput(batchTasksQuerySchema, req.query);
    const batch = await findAccountBatch(deps.db, res.locals.accountId, req.params.batchId);
    const page = await listBatchTasks(deps.db, batch.id, query);
    res.json({
      data: page.tasks.map((t) => ({ ...toNativeTask(t, deps.signLink), batch_line: t.batchLine, input_name: t.inputName })),
      next_cursor: page.nextCursor ?? null,
    });
  });

  router.get("/:batchId/results", async (req, res) => {
    const format = parseInput(batchResultsQuerySchema, req.query).format;
    const batch = await findAccountBatch(deps.db, res.locals.accountId, req.params.batchId);
    const chosen = format ?? (req.accepts(["application/x-ndjson", "text/csv"]) === "text/csv" ? "csv" : "ndjson");
    await streamManifest(deps, res, batch.id, chosen);
  });

  router.post("/:batchId/cancel", async (req, res) => {
    const batch = await findAccountBatch(deps.db, res.locals.accountId, req.params.batchId);
    const { canceled } = await cancelBatch(deps.batches, batch);
    const after = await findAccountBatch(deps.db, res.locals.accountId, batch.id);
    res.json({ ...toBatchView(await batchProgress(deps.db, after)), canceled_now: canceled });
  });

  router.post("/:batchId/retry", async (req, res) => {
    const batch = await findAccountBatch(deps.db, res.locals.accountId, req.params.batchId);
    const { retried } = await retryBatch(deps.batches, batch);
    const after = await findAccountBatch(deps.db, res.locals.accountId, batch.id);
    res.json({ ...toBatchView(await batchProgress(deps.db, after)), retried });
  });

  router.all("/", methodNotAllowed("GET", "POST"));
  router.all(["/:batchId", "/:batchId/tasks", "/:batchId/results"], methodNotAllowed("GET"));
  router.all(["/:batchId/cancel", "/:batchId/retry"], methodNotAllowed("POST"));
  router.use(problemDetailsHandler(deps.logger));
  return router;
};
