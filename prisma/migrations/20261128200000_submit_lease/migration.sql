-- AlterTable
ALTER TABLE "task" ADD COLUMN     "submit_lease_until" TIMESTAMP(3);

