-- CreateEnum
CREATE TYPE "batch_upload" AS ENUM ('receiving', 'complete', 'broken_off');

-- CreateEnum
CREATE TYPE "idempotency_state" AS ENUM ('in_flight', 'done');

-- AlterTable
ALTER TABLE "account" ADD COLUMN     "spend_cap_credits" INTEGER;

-- AlterTable
ALTER TABLE "task" ADD COLUMN     "batch_id" UUID,
ADD COLUMN     "batch_line" INTEGER;

-- CreateTable
CREATE TABLE "batch" (
    "id" UUID NOT NULL,
    "account_id" UUID NOT NULL,
    "name" TEXT,
    "source" TEXT NOT NULL,
    "defaults" JSONB,
    "callback_url" TEXT,
    "upload" "batch_upload" NOT NULL DEFAULT 'receiving',
    "accepted_items" INTEGER NOT NULL DEFAULT 0,
    "rejected_items" INTEGER NOT NULL DEFAULT 0,
    "lines_read" INTEGER NOT NULL DEFAULT 0,
    "end_status" TEXT,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "received_at" TIMESTAMP(3),
    "canceled_at" TIMESTAMP(3),
    "finished_at" TIMESTAMP(3),

    CONSTRAINT "batch_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "idempotency_key" (
    "account_id" UUID NOT NULL,
    "key" TEXT NOT NULL,
    "scope" TEXT NOT NULL,
    "request_hash" TEXT,
    "state" "idempotency_state" NOT NULL DEFAULT 'in_flight',
    "response_status" INTEGER,
    "response_body" JSONB,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "expires_at" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "idempotency_key_pkey" PRIMARY KEY ("account_id","key")
);

-- CreateIndex
CREATE INDEX "batch_account_id_id_idx" ON "batch"("account_id", "id");

-- CreateIndex
CREATE INDEX "idempotency_key_expires_at_idx" ON "idempotency_key"("expires_at");

-- CreateIndex
CREATE INDEX "task_batch_id_status_idx" ON "task"("batch_id", "status");

-- CreateIndex
CREATE INDEX "task_batch_id_batch_line_idx" ON "task"("batch_id", "batch_line");

-- AddForeignKey
ALTER TABLE "task" ADD CONSTRAINT "task_batch_id_fkey" FOREIGN KEY ("batch_id") REFERENCES "batch"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "batch" ADD CONSTRAINT "batch_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "account"("id") ON DELETE CASCADE ON UPDATE CASCADE;

