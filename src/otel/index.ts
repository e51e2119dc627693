/**
 * linkbay-multitenant/otel: OpenTelemetry spans for tenant transactions, tenant resolution and
 * destroyed clients, built by subscribing to the core's diagnostics channels (src/events.ts), so the
 * core never imports OpenTelemetry. @opentelemetry/api is an optional peer dependency of this subpath.
 */
import diagnostics from 'node:diagnostics_channel';
import { context, SpanKind, SpanStatusCode, trace, type Attributes, type Tracer } from '@opentelemetry/api';
import { CHANNELS, type ClientDestroyedEvent, type ResolutionEvent, type TransactionEvent } from '../events.js';

export interface TenantTracingOptions {
  /** Default: `trace.getTracer('linkbay-multitenant')` from the registered provider. */
  readonly tracer?: Tracer;
  /** The attribute carrying the canonical tenant id. Default `tenant.id`. */
  readonly tenantAttribute?: string;
}

export interface TenantTracing {
  /** Stops creating spans (unsubscribes from the channels). */
  close(): void;
}

/**
 * Creates a span for each tenant transaction (`tenant.transaction`, or `tenant.query` for a
 * single-statement tenantQuery), each tenant resolution (`tenant.resolve`) and each destroyed client
 * (`tenant.client_destroyed`), with the tenant id as an attribute. The core publishes an event when
 * the work has ended, in the caller's async context: the span is a child of the span active there
 * (the request's, with a context manager registered) and is back-dated by the event's duration.
 *
 * @example
 * import { instrumentTenancy } from 'linkbay-multitenant/otel';
 * const tracing = instrumentTenancy(); // after your NodeSDK / TracerProvider is registered
 */
export function instrumentTenancy(options: TenantTracingOptions = {}): TenantTracing {
  const tracer = options.tracer ?? trace.getTracer('linkbay-multitenant');
  const tenantKey = options.tenantAttribute ?? 'tenant.id';
  if (typeof tenantKey !== 'string' || tenantKey.length === 0) throw new TypeError('`tenantAttribute` must be a non-empty string');

  const span = (name: string, durationMs: number, attributes: Attributes, failed: boolean) => {
    const end = Date.now();
    const started = tracer.startSpan(name, { kind: SpanKind.INTERNAL, startTime: end - Math.max(0, durationMs), attributes }, context.active());
    if (failed) started.setStatus({ code: SpanStatusCode.ERROR });
    started.end(end);
  };

  const onTransaction = (message: unknown) => {
    const event = message as TransactionEvent;
    span(event.single ? 'tenant.query' : 'tenant.transaction', event.durationMs, {
      [tenantKey]: event.tenantId,
      'db.system': 'postgresql',
      'linkbay.transaction.outcome': event.outcome,
      'linkbay.transaction.statements': event.statements,
    }, event.outcome === 'rollback');
  };
  const onResolution = (message: unknown) => {
    const event = message as ResolutionEvent;
    const attributes: Attributes = { 'linkbay.resolution.outcome': event.outcome };
    if (event.strategy !== undefined) attributes['linkbay.resolution.strategy'] = event.strategy;
    if (event.tenantId !== undefined) attributes[tenantKey] = event.tenantId;
    // A request naming no, a bad or an unknown tenant is the client's error, not the server's.
    span('tenant.resolve', event.durationMs, attributes, event.outcome === 'error');
  };
  const onDestroyed = (message: unknown) => {
    const event = message as ClientDestroyedEvent;
    span('tenant.client_destroyed', 0, { [tenantKey]: event.tenantId, 'linkbay.client.destroy_reason': event.reason }, true);
  };

  diagnostics.subscribe(CHANNELS.transaction, onTransaction);
  diagnostics.subscribe(CHANNELS.resolution, onResolution);
  diagnostics.subscribe(CHANNELS.clientDestroyed, onDestroyed);
  let closed = false;
  return {
    close() {
      if (closed) return;
      closed = true;
      diagnostics.unsubscribe(CHANNELS.transaction, onTransaction);
      diagnostics.unsubscribe(CHANNELS.resolution, onResolution);
      diagnostics.unsubscribe(CHANNELS.clientDestroyed, onDestroyed);
    },
  };
}
