-- AlterTable
ALTER TABLE "task" ADD COLUMN     "images_deleted_at" TIMESTAMP(3);

-- CreateIndex
CREATE INDEX "task_finished_at_idx" ON "task"("finished_at");

-- CreateIndex
CREATE INDEX "task_images_deleted_at_finished_at_idx" ON "task"("images_deleted_at", "finished_at");

-- CreateIndex
CREATE INDEX "batch_finished_at_idx" ON "batch"("finished_at");

