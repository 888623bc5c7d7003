import { context, propagation, SpanKind, SpanStatusCode, trace, TraceFlags, type Context, type Span } from "@opentelemetry/api";
import type { NodeTracerProvider, SpanProcessor } from "@opentelemetry/sdk-trace-node";
import type { BullMQOtel } from "bullmq-otel";
import { z } from "zod";

// Traces are off unless an OTLP endpoint is configured: then nothing here registers anything and
// every helper below runs its work directly (no span objects, no context switches), and the SDK,
// the exporter and BullMQ's hook are not even loaded (~0.3 s of CPU at every start).
export const tracingEnv = {
  // OTLP/HTTP collector base URL (spans go to <url>/v1/traces), e.g. http://127.0.0.1:4318.
  OTEL_EXPORTER_OTLP_ENDPOINT: z.url({ protocol: /^https?$/ }).optional(),
};

const tracerName = "kling-orchestrator";
let provider: NodeTracerProvider | undefined;
let bullmq: BullMQOtel | undefined;

let starting: Promise<void> | undefined;

// One provider per process (the API and a worker may share a process in tests): the first call
// wins; later calls reuse it.
export const startTracing = async (options: { serviceName: string; endpoint?: string; processor?: SpanProcessor }): Promise<boolean> => {
  if (!starting && !options.endpoint && !options.processor) return false;
  starting ??= (async () => {
    const [{ OTLPTraceExporter }, { resourceFromAttributes }, { BatchSpanProcessor, NodeTracerProvider }, { BullMQOtel }] = await Promise.all([
      import("@opentelemetry/exporter-trace-otlp-http"),
      import("@opentelemetry/resources"),
      import("@opentelemetry/sdk-trace-node"),
      import("bullmq-otel"),
    ]);
    const processor = options.processor ?? new BatchSpanProcessor(new OTLPTraceExporter({ url: `${options.endpoint!.replace(/\/$/, "")}/v1/traces` }));
    provider = new NodeTracerProvider({ resource: resourceFromAttributes({ "service.name": options.serviceName }), spanProcessors: [processor] });
    // Global tracer provider, AsyncLocalStorage context and W3C trace-context propagation.
    provider.register();
    bullmq = new BullMQOtel({ tracerName: "bullmq" });
  })();
  await starting;
  return true;
};

// Sends what is buffered (a stopping process); the provider stays for others in this process.
export const flushTracing = async () => {
  await provider?.forceFlush();
};

export const tracingOn = () => provider !== undefined;

// BullMQ's own telemetry hook (queues and workers): the producer's context travels in the job, so
// a worker's span continues the trace that enqueued it.
export const bullmqTelemetry = () => bullmq;

// Every span about one task shares one trace whose id is the task's UUID (hex), under a virtual
// root: the intake, each job, each provider call, a callback (which arrives with no trace context
// of ours) and the archive all land in the same trace without storing any context.
const taskContext = (taskId: string): Context => {
  const hex = taskId.replaceAll("-", "").toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(hex)) return context.active();
  return trace.setSpanContext(context.active(), { traceId: hex, spanId: hex.slice(16), traceFlags: TraceFlags.SAMPLED, isRemote: true });
};

const runInSpan = async <T>(span: Span, ctx: Context, work: () => Promise<T>): Promise<T> => {
  try {
    return await context.with(trace.setSpan(ctx, span), work);
  } catch (error) {
    span.recordException(error as Error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error).message });
    throw error;
  } finally {
    span.end();
  }
};

// A span in the task's trace, linked to whatever span is active (the HTTP request, the job).
export const inTaskSpan = <T>(taskId: string, name: string, work: () => Promise<T>, attributes: Record<string, string | number> = {}): Promise<T> => {
  if (!provider) return work();
  const active = trace.getSpanContext(context.active());
  const ctx = taskContext(taskId);
  const span = trace.getTracer(tracerName).startSpan(name, { attributes: { "task.id": taskId, ...attributes }, links: active ? [{ context: active }] : [] }, ctx);
  return runInSpan(span, ctx, work);
};

// A client span around a provider call; `headers` gets the traceparent to send along.
export const inProviderSpan = <T>(operation: string, work: (headers: Record<string, string>) => Promise<T>): Promise<T> => {
  if (!provider) return work({});
  const span = trace.getTracer(tracerName).startSpan(`provider ${operation}`, { kind: SpanKind.CLIENT, attributes: { "provider.operation": operation } });
  const ctx = trace.setSpan(context.active(), span);
  const headers: Record<string, string> = {};
  propagation.inject(ctx, headers);
  return runInSpan(span, context.active(), () => work(headers));
};

// A server span per HTTP request, continuing a caller's traceparent when one is sent.
export const inServerSpan = <T>(request: { method: string; route: string; headers: Record<string, unknown> }, work: (span: Span | undefined) => T): T => {
  if (!provider) return work(undefined);
  const parent = propagation.extract(context.active(), request.headers);
  const span = trace.getTracer(tracerName).startSpan(`${request.method} ${request.route}`, {
    kind: SpanKind.SERVER,
    attributes: { "http.request.method": request.method, "url.path": request.route },
  }, parent);
  return context.with(trace.setSpan(parent, span), () => work(span));
};
