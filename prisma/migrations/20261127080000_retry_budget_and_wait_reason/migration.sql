-- AlterTable
ALTER TABLE "task" ADD COLUMN     "resubmissions" INTEGER NOT NULL DEFAULT 0,
ADD COLUMN     "transient_failures" INTEGER NOT NULL DEFAULT 0,
ADD COLUMN     "wait_reason" TEXT;

