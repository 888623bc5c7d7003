import { z } from "zod";

// The provider routes' state as /readyz and GET /v1/provider/routes show it, as zod:
// provider-routes.presenter.ts is typed against these.

const isoTime = z.iso.datetime({ offset: true });

const gateFields = {
  state: z.enum(["closed", "open", "paused"]).meta({ description: "closed (normal), open (circuit open) or paused (account paused by the provider)" }),
  reason: z.string().optional(),
  since: isoTime.optional(),
  next_probe_at: isoTime.optional(),
};

const slotsSchema = z.object({ capacity: z.int(), effective: z.int(), in_use: z.int() });

export const providerRouteStateSchema = z
  .object({
    name: z.string(),
    kind: z.enum(["cometapi", "kling", "simulator"]),
    order: z.int().meta({ description: "1 is the preferred route; later ones take work it cannot" }),
    ...gateFields,
    slots: slotsSchema,
    run_ms: z.int().nullable().meta({ description: "The learnt run time of a task on this route, while one has been observed" }),
    unit_price: z.number().nullable(),
  })
  .meta({ id: "ProviderRouteState" });

export type ProviderRouteStateView = z.infer<typeof providerRouteStateSchema>;

// The provider as a whole: the first route whose circuit is closed (else the preferred one), slots summed.
export const providerSummarySchema = z
  .object({ ...gateFields, slots: slotsSchema, routes: z.array(providerRouteStateSchema) })
  .meta({ id: "ProviderSummary" });

export type ProviderSummaryView = z.infer<typeof providerSummarySchema>;

export const providerRouteUsageSchema = z
  .object({
    name: z.string(),
    configured: z.boolean().meta({ description: "false: a route no longer in PROVIDER_ROUTES that ran some of the account's tasks" }),
    state: providerRouteStateSchema.nullable().meta({ description: "null when not configured, or when the state could not be read in time" }),
    tasks: z.int(),
    succeeded: z.int(),
    failed: z.int(),
    slot_tasks: z.int().meta({ description: "Sum of n over the tasks" }),
    credits_spent: z.number().meta({ description: "Credits the provider charged for the account's tasks on this route (the credit ledger)" }),
    credits_reserved: z.number().meta({ description: "Credits held for the account's unfinished tasks on this route" }),
    cost: z.number().nullable().meta({ description: "Sum of unit_price × n over the charged tasks (the price when each was settled), when a price is configured" }),
  })
  .meta({ id: "ProviderRouteUsage" });

export type ProviderRouteUsageView = z.infer<typeof providerRouteUsageSchema>;

export const providerRoutesAnswerSchema = z.object({ data: z.array(providerRouteUsageSchema) }).meta({ id: "ProviderRoutes" });
