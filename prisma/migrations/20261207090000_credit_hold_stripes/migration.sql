-- Holds of accounts without a spend cap, spread over a few rows per account (credit-ledger.ts).
CREATE TABLE "credit_hold_stripe" (
    "account_id" UUID NOT NULL,
    "stripe" SMALLINT NOT NULL,
    "reserved" DECIMAL(18,6) NOT NULL DEFAULT 0,
    "updated_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "credit_hold_stripe_pkey" PRIMARY KEY ("account_id","stripe")
);

-- AddForeignKey
ALTER TABLE "credit_hold_stripe" ADD CONSTRAINT "credit_hold_stripe_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "account"("id") ON DELETE CASCADE ON UPDATE CASCADE;
