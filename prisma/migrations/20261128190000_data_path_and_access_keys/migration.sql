-- DropForeignKey
ALTER TABLE "task_source_image" DROP CONSTRAINT "task_source_image_task_id_fkey";

-- AlterTable
ALTER TABLE "api_key" ADD COLUMN     "revoked_at" TIMESTAMP(3);

-- AlterTable
ALTER TABLE "task" ADD COLUMN     "request_hash" TEXT,
ADD COLUMN     "source_key" TEXT,
ALTER COLUMN "updated_at" SET DEFAULT CURRENT_TIMESTAMP;

-- DropTable
DROP TABLE "task_source_image";

-- CreateTable
CREATE TABLE "access_key" (
    "id" UUID NOT NULL,
    "account_id" UUID NOT NULL,
    "access_key" TEXT NOT NULL,
    "secret_encrypted" TEXT NOT NULL,
    "label" TEXT,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "revoked_at" TIMESTAMP(3),

    CONSTRAINT "access_key_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "access_key_access_key_key" ON "access_key"("access_key");

-- CreateIndex
CREATE INDEX "access_key_account_id_idx" ON "access_key"("account_id");

-- CreateIndex
CREATE INDEX "provider_callback_received_at_idx" ON "provider_callback"("received_at");

-- AddForeignKey
ALTER TABLE "access_key" ADD CONSTRAINT "access_key_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "account"("id") ON DELETE CASCADE ON UPDATE CASCADE;

