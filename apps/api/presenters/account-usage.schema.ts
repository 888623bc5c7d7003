import { z } from "zod";

// GET /v1/account/usage and GET /account/costs, as zod: the routes are typed against these and the
// OpenAPI document is generated from them.

const isoDateOrTime = z.union([z.iso.date(), z.iso.datetime({ offset: true })], { error: "must be a date (YYYY-MM-DD) or a date-time with offset" });

export const accountUsageQuerySchema = z
  .object({
    from: isoDateOrTime.optional().meta({ description: "Start of the period (inclusive, UTC). Default: the first day of the current UTC month" }),
    to: isoDateOrTime.optional().meta({ description: "End of the period (exclusive). Default: the first day of the next UTC month" }),
  })
  .strict();

const routeUsageSchema = z.object({
  route: z.string().nullable().meta({ description: "The provider route; null: held by tasks no route has taken yet" }),
  tasks: z.int().meta({ description: "Tasks settled or released in the period, plus those holding credits now" }),
  settled_tasks: z.int().meta({ description: "Tasks the provider charged, settled in the period" }),
  spent: z.number().meta({ description: "Credits charged in the period (the provider's final_unit_deduction)" }),
  reserved: z.number().meta({ description: "Credits held now by unfinished tasks" }),
  cost: z.number().nullable().meta({ description: "unit_price × n over the charged tasks, at each route's price when settled; null when no price is configured" }),
});

const dayUsageSchema = z.object({
  day: z.iso.date(),
  tasks: z.int().meta({ description: "Tasks charged that day" }),
  spent: z.number(),
  released: z.int().meta({ description: "Tasks that ended that day without a charge (failed or canceled)" }),
  cost: z.number().nullable(),
});

export const accountUsageSchema = z
  .object({
    account_id: z.uuid(),
    unit: z.literal("credits"),
    cap: z.number().nullable().meta({ description: "The spend cap (the account's, else BATCH_SPEND_CAP_CREDITS); null: none" }),
    spent: z.number().meta({ description: "Credits charged so far, all time" }),
    reserved: z.number().meta({ description: "Credits held by unfinished tasks: spent + reserved never exceeds the cap" }),
    available: z.number().nullable().meta({ description: "cap - spent - reserved; null without a cap" }),
    period: z.object({
      from: z.iso.datetime(),
      to: z.iso.datetime(),
      spent: z.number().meta({ description: "Credits charged within the period (by settlement time)" }),
      cost: z.number().nullable(),
      settled_tasks: z.int(),
      released_tasks: z.int(),
    }),
    by_route: z.array(routeUsageSchema),
    by_day: z.array(dayUsageSchema).meta({ description: "Days of the period with a settlement, oldest first (UTC days)" }),
  })
  .meta({ id: "AccountUsage" });

export type AccountUsageView = z.infer<typeof accountUsageSchema>;

// Kling's GET /account/costs: the time window in Unix milliseconds.
const unixMs = (what: string) =>
  z.coerce
    .number({ error: `must be a Unix time in milliseconds` })
    .int({ error: "must be a whole number of milliseconds" })
    .min(0, { error: "must be a Unix time in milliseconds" })
    .meta({ description: `${what} of the query, Unix time in ms` });

export const accountCostsQuerySchema = z
  .object({
    start_time: unixMs("Start"),
    end_time: unixMs("End"),
    resource_pack_name: z.string().optional().meta({ description: "Only the pack of this name" }),
  })
  .strict()
  .refine((q) => q.end_time > q.start_time, { path: ["end_time"], error: "must be after start_time" });

export const resourcePackSchema = z.object({
  resource_pack_name: z.string(),
  resource_pack_id: z.string(),
  resource_pack_type: z.enum(["decreasing_total", "constant_period"]),
  total_quantity: z.number(),
  remaining_quantity: z.number(),
  purchase_time: z.int(),
  effective_time: z.int(),
  invalid_time: z.int(),
  status: z.enum(["toBeOnline", "online", "expired", "runOut"]),
});

export const accountCostsAnswerSchema = z
  .object({
    code: z.literal(0),
    message: z.string(),
    request_id: z.string(),
    data: z.object({
      code: z.literal(0),
      msg: z.string(),
      resource_pack_subscribe_infos: z.array(resourcePackSchema).meta({
        description: "The account's spend cap as one decreasing_total pack (total = cap, remaining = cap - spent - reserved); empty without a cap",
      }),
      consumption: z
        .object({ start_time: z.int(), end_time: z.int(), spent: z.number(), reserved: z.number(), tasks: z.int() })
        .meta({ description: "Ours, not Kling's: credits charged within the window, and held now" }),
    }),
  })
  .meta({ id: "AccountCosts" });

export type AccountCostsAnswer = z.infer<typeof accountCostsAnswerSchema>;
