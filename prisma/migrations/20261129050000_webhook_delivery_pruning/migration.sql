-- Ended deliveries are pruned past WEBHOOK_DELIVERY_RETENTION_DAYS.
CREATE INDEX "webhook_delivery_finished_at_idx" ON "webhook_delivery"("finished_at");
