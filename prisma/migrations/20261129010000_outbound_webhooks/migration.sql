-- CreateEnum
CREATE TYPE "task_origin" AS ENUM ('native', 'dropin');

-- CreateEnum
CREATE TYPE "webhook_delivery_status" AS ENUM ('pending', 'succeeded', 'failed', 'disabled');

-- AlterTable
ALTER TABLE "task" ADD COLUMN     "origin" "task_origin" NOT NULL DEFAULT 'native';

-- AlterTable
ALTER TABLE "provider_callback" ADD COLUMN     "webhook_id" TEXT;

-- CreateTable
CREATE TABLE "webhook_delivery" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "seq" BIGSERIAL NOT NULL,
    "account_id" UUID NOT NULL,
    "task_id" UUID,
    "batch_id" UUID,
    "event_type" TEXT NOT NULL,
    "url" TEXT NOT NULL,
    "payload_kind" TEXT NOT NULL,
    "payload" JSONB NOT NULL,
    "status" "webhook_delivery_status" NOT NULL DEFAULT 'pending',
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "next_attempt_at" TIMESTAMP(3) DEFAULT CURRENT_TIMESTAMP,
    "lease_until" TIMESTAMP(3),
    "last_status_code" INTEGER,
    "last_error" TEXT,
    "last_latency_ms" INTEGER,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "finished_at" TIMESTAMP(3),

    CONSTRAINT "webhook_delivery_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "webhook_attempt" (
    "id" BIGSERIAL NOT NULL,
    "delivery_id" UUID NOT NULL,
    "attempt" INTEGER NOT NULL,
    "started_at" TIMESTAMP(3) NOT NULL,
    "status_code" INTEGER,
    "latency_ms" INTEGER NOT NULL,
    "error" TEXT,
    "response_body" TEXT,

    CONSTRAINT "webhook_attempt_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "webhook_signing_secret" (
    "account_id" UUID NOT NULL,
    "current_sealed" TEXT NOT NULL,
    "previous_sealed" TEXT,
    "previous_until" TIMESTAMP(3),
    "rotated_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "webhook_signing_secret_pkey" PRIMARY KEY ("account_id")
);

-- CreateTable
CREATE TABLE "webhook_disabled_url" (
    "account_id" UUID NOT NULL,
    "url" TEXT NOT NULL,
    "disabled_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "reason" TEXT NOT NULL,

    CONSTRAINT "webhook_disabled_url_pkey" PRIMARY KEY ("account_id","url")
);

-- CreateIndex
CREATE UNIQUE INDEX "webhook_delivery_seq_key" ON "webhook_delivery"("seq");

-- CreateIndex
CREATE INDEX "webhook_delivery_account_id_seq_idx" ON "webhook_delivery"("account_id", "seq");

-- CreateIndex
CREATE INDEX "webhook_delivery_task_id_seq_idx" ON "webhook_delivery"("task_id", "seq");

-- CreateIndex
CREATE INDEX "webhook_delivery_batch_id_seq_idx" ON "webhook_delivery"("batch_id", "seq");

-- CreateIndex
CREATE INDEX "webhook_delivery_status_next_attempt_at_idx" ON "webhook_delivery"("status", "next_attempt_at");

-- CreateIndex
CREATE INDEX "webhook_attempt_delivery_id_id_idx" ON "webhook_attempt"("delivery_id", "id");

-- CreateIndex
CREATE INDEX "provider_callback_task_id_webhook_id_idx" ON "provider_callback"("task_id", "webhook_id");

-- AddForeignKey
ALTER TABLE "webhook_delivery" ADD CONSTRAINT "webhook_delivery_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "account"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "webhook_delivery" ADD CONSTRAINT "webhook_delivery_task_id_fkey" FOREIGN KEY ("task_id") REFERENCES "task"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "webhook_attempt" ADD CONSTRAINT "webhook_attempt_delivery_id_fkey" FOREIGN KEY ("delivery_id") REFERENCES "webhook_delivery"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "webhook_signing_secret" ADD CONSTRAINT "webhook_signing_secret_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "account"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "webhook_disabled_url" ADD CONSTRAINT "webhook_disabled_url_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "account"("id") ON DELETE CASCADE ON UPDATE CASCADE;

