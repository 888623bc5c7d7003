import { randomBytes } from "node:crypto";
import { v7 as uuidv7 } from "uuid";
import type { Db, Task } from "../db/prisma-client.ts";
import { AppError, validationError } from "../errors/app-error.ts";
import { databaseUnavailable, isDatabaseUnavailable, isUniqueViolation } from "../errors/dependency-errors.ts";
import type { ExpandRequest } from "../expand-request/expand-request.schema.ts";
import { inspectSourceImage } from "../expand-request/source-image.ts";

export type AcceptTaskDeps = {
  db: Db;
  // Must throw (an AppError 503) when the queue cannot take the job: the insert then rolls back.
  enqueueSubmit: (taskId: string, priority: number) => Promise<void>;
  stallRecheckMs: number;
};

// Intake: validate what can be validated here, then write the task and enqueue its submit job in one
// transaction. The job is added before the commit, so a task row never exists without its job; a
// job whose transaction then fails finds no task and is dropped by the processor.
export const acceptTask = async (deps: AcceptTaskDeps, accountId: string, request: ExpandRequest): Promise<Task> => {
  let inline: { bytes: Buffer; width: number; height: number } | undefined;
  if (request.image.kind === "base64") {
    const bytes = Buffer.from(request.image.data, "base64");
    const check = await inspectSourceImage(bytes);
    if (!check.ok) throw validationError([{ field: "image", message: check.reason }]);
    inline = { bytes, width: check.info.width, height: check.info.height };
  }
  const taskId = uuidv7();
  try {
    return await deps.db.$transaction(
      async (tx) => {
        // One intake at a time per account (until commit), so the backlog count below sees every
        // earlier task of the account: concurrent transactions cannot see each other's inserts, and a
        // burst of parallel requests would otherwise all count a backlog of 1.
        await tx.$executeRaw`select pg_advisory_xact_lock(hashtext(${accountId}))`;
        const task = await tx.task.create({
          data: {
            id: taskId,
            accountId,
            externalTaskId: request.externalTaskId,
            callbackUrl: request.callbackUrl,
            imageUrl: request.image.kind === "url" ? request.image.url : null,
            upRatio: request.ratios.up,
            downRatio: request.ratios.down,
            leftRatio: request.ratios.left,
            rightRatio: request.ratios.right,
            prompt: request.prompt,
            n: request.n,
            watermark: request.watermark,
            sourceWidth: inline?.width,
            sourceHeight: inline?.height,
            callbackToken: randomBytes(24).toString("base64url"),
            nextCheckAt: new Date(Date.now() + deps.stallRecheckMs),
          },
        });
        if (inline) await tx.taskSourceImage.create({ data: { taskId, bytes: new Uint8Array(inline.bytes) } });
        await tx.taskEvent.create({ data: { taskId, fromStatus: null, toStatus: "queued", source: "api" } });
        // Fairness: an account's k-th waiting task gets priority k, so a single interactive task
        // overtakes a bulk backlog and accounts sharing the provider take turns.
        const backlog = await tx.task.count({ where: { accountId, status: "queued" } });
        await deps.enqueueSubmit(taskId, backlog);
        return task;
      },
      { timeout: 15_000, maxWait: 5_000 },
    );
  } catch (error) {
    if (error instanceof AppError) throw error;
    if (isUniqueViolation(error)) {
      throw new AppError("conflict", `external_task_id '${request.externalTaskId}' already exists for this account`, {
        violations: [{ field: "external_task_id", message: "already used by another task of this account" }],
      });
    }
    if (isDatabaseUnavailable(error)) throw databaseUnavailable(error);
    throw error;
  }
};
