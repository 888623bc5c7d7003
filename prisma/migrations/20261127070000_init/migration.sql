-- CreateSchema
CREATE SCHEMA IF NOT EXISTS "public";

-- CreateEnum
CREATE TYPE "task_status" AS ENUM ('queued', 'submitting', 'submitted', 'processing', 'archiving', 'succeeded', 'failed', 'canceled');

-- CreateEnum
CREATE TYPE "event_source" AS ENUM ('api', 'worker', 'callback', 'poll', 'sweeper', 'operator');

-- CreateEnum
CREATE TYPE "callback_outcome" AS ENUM ('applied', 'duplicate', 'stale', 'unknown_task', 'rejected');

-- CreateTable
CREATE TABLE "account" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "account_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "api_key" (
    "id" UUID NOT NULL,
    "account_id" UUID NOT NULL,
    "key_hash" TEXT NOT NULL,
    "label" TEXT,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "api_key_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "task" (
    "id" UUID NOT NULL,
    "account_id" UUID NOT NULL,
    "external_task_id" TEXT,
    "callback_url" TEXT,
    "status" "task_status" NOT NULL DEFAULT 'queued',
    "image_url" TEXT,
    "up_ratio" DOUBLE PRECISION NOT NULL,
    "down_ratio" DOUBLE PRECISION NOT NULL,
    "left_ratio" DOUBLE PRECISION NOT NULL,
    "right_ratio" DOUBLE PRECISION NOT NULL,
    "prompt" TEXT,
    "n" INTEGER NOT NULL DEFAULT 1,
    "watermark" BOOLEAN,
    "source_width" INTEGER,
    "source_height" INTEGER,
    "provider" TEXT,
    "provider_task_id" TEXT,
    "provider_status" TEXT,
    "provider_status_msg" TEXT,
    "provider_updated_at" BIGINT,
    "final_unit_deduction" TEXT,
    "callback_token" TEXT NOT NULL,
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "failure_class" TEXT,
    "failure_code" TEXT,
    "failure_message" TEXT,
    "accepted_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "submitted_at" TIMESTAMP(3),
    "finished_at" TIMESTAMP(3),
    "next_check_at" TIMESTAMP(3),
    "updated_at" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "task_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "task_source_image" (
    "task_id" UUID NOT NULL,
    "bytes" BYTEA NOT NULL,

    CONSTRAINT "task_source_image_pkey" PRIMARY KEY ("task_id")
);

-- CreateTable
CREATE TABLE "task_image" (
    "task_id" UUID NOT NULL,
    "index" INTEGER NOT NULL,
    "provider_url" TEXT NOT NULL,
    "storage_key" TEXT,
    "width" INTEGER,
    "height" INTEGER,
    "bytes" INTEGER,
    "sha256" TEXT,
    "stored_at" TIMESTAMP(3),

    CONSTRAINT "task_image_pkey" PRIMARY KEY ("task_id","index")
);

-- CreateTable
CREATE TABLE "task_event" (
    "id" BIGSERIAL NOT NULL,
    "task_id" UUID NOT NULL,
    "from_status" "task_status",
    "to_status" "task_status" NOT NULL,
    "source" "event_source" NOT NULL,
    "detail" JSONB,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "task_event_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "provider_callback" (
    "id" BIGSERIAL NOT NULL,
    "task_id" UUID,
    "received_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "raw_body" TEXT NOT NULL,
    "provider_status" TEXT,
    "outcome" "callback_outcome",
    "detail" TEXT,

    CONSTRAINT "provider_callback_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "api_key_key_hash_key" ON "api_key"("key_hash");

-- CreateIndex
CREATE INDEX "api_key_account_id_idx" ON "api_key"("account_id");

-- CreateIndex
CREATE INDEX "task_account_id_id_idx" ON "task"("account_id", "id");

-- CreateIndex
CREATE INDEX "task_account_id_status_id_idx" ON "task"("account_id", "status", "id");

-- CreateIndex
CREATE INDEX "task_status_next_check_at_idx" ON "task"("status", "next_check_at");

-- CreateIndex
CREATE UNIQUE INDEX "task_account_id_external_task_id_key" ON "task"("account_id", "external_task_id");

-- CreateIndex
CREATE INDEX "task_event_task_id_id_idx" ON "task_event"("task_id", "id");

-- CreateIndex
CREATE INDEX "provider_callback_task_id_idx" ON "provider_callback"("task_id");

-- AddForeignKey
ALTER TABLE "api_key" ADD CONSTRAINT "api_key_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "account"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "task" ADD CONSTRAINT "task_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "account"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "task_source_image" ADD CONSTRAINT "task_source_image_task_id_fkey" FOREIGN KEY ("task_id") REFERENCES "task"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "task_image" ADD CONSTRAINT "task_image_task_id_fkey" FOREIGN KEY ("task_id") REFERENCES "task"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "task_event" ADD CONSTRAINT "task_event_task_id_fkey" FOREIGN KEY ("task_id") REFERENCES "task"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "provider_callback" ADD CONSTRAINT "provider_callback_task_id_fkey" FOREIGN KEY ("task_id") REFERENCES "task"("id") ON DELETE SET NULL ON UPDATE CASCADE;

