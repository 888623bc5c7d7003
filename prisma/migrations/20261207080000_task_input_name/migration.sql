-- AlterTable
ALTER TABLE "task" ADD COLUMN     "input_name" TEXT;
