-- CreateEnum
CREATE TYPE "credit_state" AS ENUM ('reserved', 'settled', 'released', 'refunded');

-- AlterTable
ALTER TABLE "account" ADD COLUMN     "replay_window_seconds" INTEGER;

-- CreateTable
CREATE TABLE "credit_balance" (
    "account_id" UUID NOT NULL,
    "reserved" DECIMAL(18,6) NOT NULL DEFAULT 0,
    "spent" DECIMAL(18,6) NOT NULL DEFAULT 0,
    "updated_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "credit_balance_pkey" PRIMARY KEY ("account_id")
);

-- CreateTable
CREATE TABLE "credit_entry" (
    "id" BIGSERIAL NOT NULL,
    "account_id" UUID NOT NULL,
    "task_id" UUID NOT NULL,
    "batch_id" UUID,
    "state" "credit_state" NOT NULL DEFAULT 'reserved',
    "reserved" DECIMAL(18,6) NOT NULL,
    "settled" DECIMAL(18,6) NOT NULL DEFAULT 0,
    "route" TEXT,
    "unit_price" DECIMAL(14,6),
    "cost" DECIMAL(18,6),
    "reserved_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "settled_at" TIMESTAMP(3),

    CONSTRAINT "credit_entry_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "credit_entry_task_id_idx" ON "credit_entry"("task_id");

-- CreateIndex
CREATE INDEX "credit_entry_account_id_settled_at_idx" ON "credit_entry"("account_id", "settled_at");

-- CreateIndex
CREATE INDEX "credit_entry_batch_id_idx" ON "credit_entry"("batch_id");

-- CreateIndex
CREATE INDEX "task_account_id_request_hash_accepted_at_idx" ON "task"("account_id", "request_hash", "accepted_at");

-- AddForeignKey
ALTER TABLE "credit_balance" ADD CONSTRAINT "credit_balance_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "account"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "credit_entry" ADD CONSTRAINT "credit_entry_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "account"("id") ON DELETE CASCADE ON UPDATE CASCADE;


-- Backfill: the ledger starts from the task table as it is. Ended tasks are settled from their
-- final_unit_deduction (or released), unfinished ones hold n credits (CREDITS_PER_IMAGE default).
INSERT INTO "credit_entry" ("account_id", "task_id", "batch_id", "state", "reserved", "settled", "route", "unit_price", "cost", "reserved_at", "settled_at")
SELECT t.account_id, t.id, t.batch_id,
       CASE WHEN t.status NOT IN ('succeeded', 'failed', 'canceled') THEN 'reserved'::credit_state
            WHEN coalesce(d.credits, 0) > 0 THEN 'settled'::credit_state
            ELSE 'released'::credit_state END,
       t.n,
       CASE WHEN t.status IN ('succeeded', 'failed', 'canceled') THEN coalesce(d.credits, 0) ELSE 0 END,
       t.route, t.unit_price,
       CASE WHEN coalesce(d.credits, 0) > 0 THEN t.unit_price * t.n END,
       t.accepted_at,
       CASE WHEN t.status IN ('succeeded', 'failed', 'canceled') THEN coalesce(t.finished_at, t.updated_at) END
FROM "task" t
CROSS JOIN LATERAL (SELECT CASE WHEN t.final_unit_deduction ~ '^[0-9]+(\.[0-9]+)?$' THEN t.final_unit_deduction::numeric END AS credits) d;

INSERT INTO "credit_balance" ("account_id", "reserved", "spent")
SELECT a.id,
       coalesce((SELECT sum(e.reserved) FROM "credit_entry" e WHERE e.account_id = a.id AND e.state = 'reserved'), 0),
       coalesce((SELECT sum(e.settled) FROM "credit_entry" e WHERE e.account_id = a.id AND e.state = 'settled'), 0)
FROM "account" a;
