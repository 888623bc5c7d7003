-- AlterTable
ALTER TABLE "task" ADD COLUMN     "route" TEXT,
ADD COLUMN     "unit_price" DECIMAL(14,6);
