import type { TaskStatus } from "../db/database.ts";
import type { ExpansionRatios } from "../expand-request/expand-limits.ts";
import type { ProviderErrorClass } from "./provider-error.ts";

// What the rest of the code knows of a provider: this interface and our own words (our statuses,
// ProviderError's actions and reasons). Each family (kling-official/, cometapi/, simulator/) turns
// its wire, codes and statuses into these; none of them is read outside apps/domain/provider/.

export type ProviderKind = "simulator" | "kling" | "cometapi";

export type ProviderAuth = { type: "bearer"; token: string } | { type: "jwt"; accessKey: string; secretKey: string };

// One way to reach a provider, resolved from the environment (provider-config.schema.ts,
// provider-routes.schema.ts) with the family's defaults.
export type ProviderConfig = {
  kind: ProviderKind;
  baseUrl: string;
  // CometAPI mounts Kling's routes under /kling.
  pathPrefix: "" | "/kling";
  auth: ProviderAuth;
  downField: "down" | "bottom";
  timeoutMs: number;
  externalIdLookup: "path" | "query" | "list" | "none";
};

export type ProviderCreateInput = {
  image: string;
  ratios: ExpansionRatios;
  prompt?: string | null;
  n: number;
  watermark?: boolean | null;
  externalTaskId: string;
  callbackUrl: string;
};

// Where a provider task stands, in our statuses. The provider's success is `archiving`, not
// `succeeded`: the images must be in our storage and checked first.
export const reportedStatuses = ["submitted", "processing", "archiving", "failed"] as const satisfies readonly TaskStatus[];
export type ReportedStatus = (typeof reportedStatuses)[number];

export type ProviderImage = { index: number; url: string };

// The provider's view of one task: a create's answer, a poll's, or a callback.
export type ProviderReport = {
  providerTaskId: string;
  status: ReportedStatus;
  // The provider's own word for the status, kept verbatim for the record (the task's events, the
  // callback inbox, the native answer's `provider.status`); nothing decides on it.
  providerStatus: string;
  // Why it failed, or what the provider says about it; null when it says nothing.
  message: string | null;
  // Our id as the provider echoes it back (we send the task's id).
  externalTaskId: string | null;
  // The provider's clock, Unix milliseconds.
  createdAtMs?: number;
  updatedAtMs?: number;
  // Credits charged, as the provider wrote them (credit-ledger.ts reads the text); null when none.
  charged: string | null;
  images: ProviderImage[];
};

export type ParsedCallback = { ok: true; report: ProviderReport } | { ok: false; reason: string };

// What a provider answered instead of a success, as the family reads it.
export type ProviderAnswer = { httpStatus: number; code: number | null | undefined; message: string };

export type ProviderAdapter = {
  readonly kind: ProviderKind;
  create(input: ProviderCreateInput): Promise<ProviderReport>;
  get(providerTaskId: string): Promise<ProviderReport>;
  // The task we created under this external id; undefined when the provider has none (or offers
  // no way to ask: PROVIDER_EXTERNAL_ID_LOOKUP=none).
  findByExternalId(externalTaskId: string): Promise<ProviderReport | undefined>;
  // A callback's body (parsed JSON).
  parseCallback(body: unknown): ParsedCallback;
  // What to do about a refusal. The adapter's calls throw ProviderError already classified; this is
  // the table they use, exposed for tests and documentation.
  classifyError(answer: ProviderAnswer): ProviderErrorClass;
  // The provider's status word in ours; undefined for a word the family does not know.
  mapStatus(providerStatus: string): ReportedStatus | undefined;
};

// A provider family: its defaults (applied when the configuration is resolved) and how to build
// its adapter. provider-families.ts lists them.
export type ProviderFamily = {
  kind: ProviderKind;
  // Its name in messages.
  title: string;
  pathPrefix: ProviderConfig["pathPrefix"];
  defaultDownField: ProviderConfig["downField"];
  // Whether the family takes Kling's access-key pair (a JWT) besides a bearer key.
  acceptsAccessKeyPair: boolean;
  createAdapter(config: ProviderConfig): ProviderAdapter;
};
