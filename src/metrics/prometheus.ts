import diagnostics from 'node:diagnostics_channel';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { TenantCacheStats } from '../cache.js';
import { CHANNELS, type ClientDestroyedEvent, type ResolutionEvent, type TransactionEvent } from '../events.js';
import { TenantLabels, statusClass, type RequestObservation } from './collector.js';

/** A pool's connection counts: what pg.Pool (and pg-pool) expose as getters. */
export interface PoolStats {
  readonly totalCount: number;
  readonly idleCount: number;
  readonly waitingCount: number;
}

export interface MetricsOptions {
  /** Where the metrics are registered: your own `new Registry()`, never prom-client's global one. */
  registry: Registry;
  /** A MultitenantCore (or anything with its `cache`): tenant cache figures are read from it at scrape time. */
  core?: { readonly cache?: { readonly cache: { stats(): TenantCacheStats } } | undefined };
  /** Pools by name, read at scrape time; a function for pools that come and go. The names become label values: keep them few. */
  pools?: Readonly<Record<string, PoolStats>> | (() => Readonly<Record<string, PoolStats>>);
  /** Prefix of every metric name. Default `lbmt_`. */
  prefix?: string;
  /**
   * Adds `<prefix>http_requests_by_tenant_total{tenant, status_class}`: the `topN` busiest tenants
   * (re-ranked at each scrape) get their own `tenant` value, all others share `other`, so the label
   * never has more than topN + 1 values. Off by default.
   */
  tenantLabel?: { topN: number };
  /** Buckets of the request, resolution and transaction duration histograms, in seconds. Default prom-client's (5 ms .. 10 s). */
  durationBuckets?: number[];
}

/** What `createMetrics` returns: pass it to `metricsMiddleware({ metrics })`. */
export interface Metrics {
  /** Counts one finished HTTP request (the middleware calls this). */
  observeRequest(request: RequestObservation): void;
  /** Stops observing the core (unsubscribes from its diagnostics channels). The metrics stay registered. */
  close(): void;
}

const TRANSACTION_OUTCOMES: ReadonlyArray<TransactionEvent['outcome']> = ['commit', 'rollback', 'empty'];
const DESTROY_REASONS: ReadonlyArray<ClientDestroyedEvent['reason']> = ['rollback-failed', 'not-idle', 'connection-error'];

/**
 * Prometheus metrics for a multi-tenant app, on an injected prom-client Registry. The core never
 * imports prom-client: it publishes observations on node:diagnostics_channel (`CHANNELS`) and these
 * metrics subscribe to them; cache and pool figures are pulled at scrape time (`collect()`).
 * Every label has a fixed, small set of values, and tenant ids appear only in the opt-in,
 * bounded `tenantLabel` metric. The full list is in docs/metrics.md.
 *
 * @example
 * import { Registry } from 'prom-client';
 * const registry = new Registry();
 * const metrics = createMetrics({ registry, core, pools: { app: appPool } });
 * app.use(metricsMiddleware({ metrics })).use(createMetricsRouter({ registry }).routes()).use(multitenant({ core }));
 */
export function createMetrics(options: MetricsOptions): Metrics {
  const { registry, core, pools } = options;
  if (!registry || typeof registry.registerMetric !== 'function') throw new TypeError('`registry` must be a prom-client Registry');
  const prefix = options.prefix ?? 'lbmt_';
  if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(prefix)) throw new TypeError('`prefix` must be a valid Prometheus metric name prefix');
  const registers = [registry];
  const buckets = options.durationBuckets;

  const requests = new Counter({
    name: `${prefix}http_requests_total`,
    help: 'HTTP requests by how tenant resolution ended (resolved, missing, invalid, conflict, unauthenticated, unknown, inactive, error; none when it did not run) and status class',
    labelNames: ['outcome', 'status_class'] as const,
    registers,
  });
  const requestDuration = new Histogram({
    name: `${prefix}http_request_duration_seconds`,
    help: 'HTTP request duration (until the response body is set) by resolution outcome and status class',
    labelNames: ['outcome', 'status_class'] as const,
    ...(buckets ? { buckets } : {}),
    registers,
  });
  const resolutions = new Counter({
    name: `${prefix}tenant_resolutions_total`,
    help: 'Tenant resolutions by outcome and the strategy that named the tenant (none when no strategy did)',
    labelNames: ['outcome', 'strategy'] as const,
    registers,
  });
  const resolutionDuration = new Histogram({
    name: `${prefix}tenant_resolution_duration_seconds`,
    help: 'Time to resolve a request\'s tenant (strategies, cached or database lookup, status check)',
    labelNames: ['outcome'] as const,
    ...(buckets ? { buckets } : {}),
    registers,
  });
  const transactions = new Counter({
    name: `${prefix}tenant_transactions_total`,
    help: 'Tenant transactions by outcome (commit, rollback, empty) and kind (single: tenantQuery, transaction: withTenantTransaction)',
    labelNames: ['outcome', 'kind'] as const,
    registers,
  });
  const transactionDuration = new Histogram({
    name: `${prefix}tenant_transaction_duration_seconds`,
    help: 'Tenant transaction duration, from connect to release, by kind',
    labelNames: ['kind'] as const,
    ...(buckets ? { buckets } : {}),
    registers,
  });
  const destroyed = new Counter({
    name: `${prefix}clients_destroyed_total`,
    help: 'Pooled connections destroyed instead of returned to the pool, by reason',
    labelNames: ['reason'] as const,
    registers,
  });
  // Known label combinations start at 0, so `increase(...)` works from the first scrape.
  for (const outcome of TRANSACTION_OUTCOMES) for (const kind of ['single', 'transaction']) transactions.inc({ outcome, kind }, 0);
  for (const reason of DESTROY_REASONS) destroyed.inc({ reason }, 0);

  const cache = core?.cache?.cache;
  if (cache) {
    new Counter({
      name: `${prefix}tenant_cache_lookups_total`,
      help: 'Tenant cache lookups by result: hit, negative_hit (a cached "no such tenant"), miss',
      labelNames: ['result'] as const,
      registers,
      collect() {
        const stats = cache.stats();
        this.reset();
        this.inc({ result: 'hit' }, stats.hits);
        this.inc({ result: 'negative_hit' }, stats.negativeHits);
        this.inc({ result: 'miss' }, stats.misses);
      },
    });
    new Counter({
      name: `${prefix}tenant_cache_evictions_total`,
      help: 'Tenant cache entries evicted (size limit or expiry)',
      registers,
      collect() {
        this.reset();
        this.inc(cache.stats().evictions);
      },
    });
    new Gauge({
      name: `${prefix}tenant_cache_entries`,
      help: 'Tenant cache entries by kind: found tenants, negative ("no such tenant") entries',
      labelNames: ['kind'] as const,
      registers,
      collect() {
        const stats = cache.stats();
        this.set({ kind: 'found' }, stats.size);
        this.set({ kind: 'negative' }, stats.negativeSize);
      },
    });
  }

  if (pools) {
    new Gauge({
      name: `${prefix}pool_connections`,
      help: 'Pool connections by pool and state: total, idle, waiting (clients queued for a connection)',
      labelNames: ['pool', 'state'] as const,
      registers,
      collect() {
        this.reset(); // a pool that is gone is not reported as its last value
        for (const [pool, stats] of Object.entries(typeof pools === 'function' ? pools() : pools)) {
          this.set({ pool, state: 'total' }, stats.totalCount);
          this.set({ pool, state: 'idle' }, stats.idleCount);
          this.set({ pool, state: 'waiting' }, stats.waitingCount);
        }
      },
    });
  }

  let tenantLabels: TenantLabels | undefined;
  if (options.tenantLabel) {
    const labels = new TenantLabels(options.tenantLabel.topN);
    tenantLabels = labels;
    new Counter({
      name: `${prefix}http_requests_by_tenant_total`,
      help: `HTTP requests of resolved tenants by status class; the ${labels.topN} busiest tenants (re-ranked at each scrape) by id, all others as "other"`,
      labelNames: ['tenant', 'status_class'] as const,
      registers,
      collect() {
        labels.rerank();
        this.reset();
        for (const { tenant, statusClass: status_class, count } of labels.series()) this.inc({ tenant, status_class }, count);
      },
    });
  }

  const handlers: Array<[string, (message: unknown) => void]> = [
    [
      CHANNELS.resolution,
      (message) => {
        const event = message as ResolutionEvent;
        resolutions.inc({ outcome: event.outcome, strategy: event.strategy ?? 'none' });
        resolutionDuration.observe({ outcome: event.outcome }, event.durationMs / 1000);
      },
    ],
    [
      CHANNELS.transaction,
      (message) => {
        const event = message as TransactionEvent;
        const kind = event.single ? 'single' : 'transaction';
        transactions.inc({ outcome: event.outcome, kind });
        transactionDuration.observe({ kind }, event.durationMs / 1000);
      },
    ],
    [
      CHANNELS.clientDestroyed,
      (message) => {
        destroyed.inc({ reason: (message as ClientDestroyedEvent).reason });
      },
    ],
  ];
  for (const [channel, handler] of handlers) diagnostics.subscribe(channel, handler);
  let open = true;

  return {
    observeRequest(request) {
      const labels = { outcome: request.outcome, status_class: statusClass(request.status) };
      requests.inc(labels);
      requestDuration.observe(labels, request.durationMs / 1000);
      if (request.tenantId !== undefined) tenantLabels?.record(request.tenantId, labels.status_class);
    },
    close() {
      if (!open) return;
      open = false;
      for (const [channel, handler] of handlers) diagnostics.unsubscribe(channel, handler);
    },
  };
}
