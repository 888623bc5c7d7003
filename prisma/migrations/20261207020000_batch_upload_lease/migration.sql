-- AlterTable
ALTER TABLE "batch" ADD COLUMN     "upload_lease_until" TIMESTAMP(3);

-- CreateIndex
CREATE INDEX "batch_upload_lease_until_idx" ON "batch"("upload_lease_until");

-- Uploads left receiving before leases existed (their API process died): the sweep ends them now.
UPDATE "batch" SET "upload_lease_until" = now() WHERE "upload" = 'receiving';
