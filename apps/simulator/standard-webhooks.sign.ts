// The simulator signs with the same code the API verifies with, so the two cannot drift apart.
// Kept as a re-export for the simulator tests that import it from here.
export {
  signStandardWebhook,
  standardWebhookHeaders,
  type StandardWebhookHeaders,
} from "../domain/webhooks/standard-webhooks.ts";
