import diagnostics from 'node:diagnostics_channel';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { TenantCacheStats } from '../cache.js';
import { CHANNELS, TENANT_OPERATIONS, type ClientDestroyedEvent, type ResolutionEvent, type TenantOperationEvent, type TransactionEvent } from '../events.js';
import { GUARD_CHANNELS, type GuardViolationEvent } from '../guard/events.js';
import { JOB_CHANNELS, type JobRefusedEvent, type SystemJobEvent } from '../jobs/events.js';
import { SYSTEM_CHANNEL, type SystemContextEvent } from '../system-context.js';
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
const OPERATION_OUTCOMES: ReadonlyArray<TenantOperationEvent['outcome']> = ['succeeded', 'refused', 'failed'];
// Label values come from these fixed sets (anything else is `other`): a code is never free text.
const GUARD_CODES = ['LBMT_GUARD_REFUSED', 'LBMT_GUARD_TOO_COMPLEX'];
const JOB_REFUSAL_CODES = ['LBMT_JOB_TENANT_MISSING', 'LBMT_INVALID_TENANT_ID', 'LBMT_JOB_SCOPE_MISMATCH'];
const known = (values: readonly string[], value: string | undefined) => (value !== undefined && values.includes(value) ? value : 'other');

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
  const operations = new Counter({
    name: `${prefix}tenant_operations_total`,
    help: 'Lifecycle operations (create, update, suspend, activate, delete, purge, export, import, move) by outcome: succeeded, refused (bad input, unknown tenant, a conflict; nothing changed), failed',
    labelNames: ['operation', 'outcome'] as const,
    registers,
  });
  const sourcesKept = new Counter({
    name: `${prefix}tenant_move_sources_kept_total`,
    help: "Tenant moves that succeeded but kept the source database's rows: the source changed after the copy (a write that did not go through the gate); look at them",
    registers,
  });
  const guardStatements = new Counter({
    name: `${prefix}guard_statements_total`,
    help: 'Statements the SQL guard found tenant-unsafe, by outcome (blocked in strict mode, reported otherwise) and code (LBMT_GUARD_REFUSED, LBMT_GUARD_TOO_COMPLEX)',
    labelNames: ['outcome', 'code'] as const,
    registers,
  });
  const guardBypassed = new Counter({
    name: `${prefix}guard_bypassed_statements_total`,
    help: 'Statements run unchecked by the SQL guard inside withAdminBypass',
    registers,
  });
  const systemContexts = new Counter({
    name: `${prefix}system_contexts_total`,
    help: 'withSystemContext transactions (cross-tenant work) by access (read, write) and outcome (commit, rollback)',
    labelNames: ['access', 'outcome'] as const,
    registers,
  });
  const jobsRefused = new Counter({
    name: `${prefix}jobs_refused_total`,
    help: 'Background jobs failed without running their handler, by code (no tenant, an invalid one, the wrong worker)',
    labelNames: ['code'] as const,
    registers,
  });
  const systemJobs = new Counter({
    name: `${prefix}system_jobs_total`,
    help: 'System jobs (no tenant) sent or started, by phase',
    labelNames: ['phase'] as const,
    registers,
  });
  // Known label combinations start at 0, so `increase(...)` works from the first scrape.
  for (const outcome of TRANSACTION_OUTCOMES) for (const kind of ['single', 'transaction']) transactions.inc({ outcome, kind }, 0);
  for (const reason of DESTROY_REASONS) destroyed.inc({ reason }, 0);
  for (const operation of TENANT_OPERATIONS) for (const outcome of OPERATION_OUTCOMES) operations.inc({ operation, outcome }, 0);
  sourcesKept.inc(0);
  for (const outcome of ['blocked', 'reported']) for (const code of GUARD_CODES) guardStatements.inc({ outcome, code }, 0);
  guardBypassed.inc(0);
  for (const access of ['read', 'write']) for (const outcome of ['commit', 'rollback']) systemContexts.inc({ access, outcome }, 0);
  for (const code of JOB_REFUSAL_CODES) jobsRefused.inc({ code }, 0);
  for (const phase of ['sent', 'started']) systemJobs.inc({ phase }, 0);

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
    [
      CHANNELS.tenantOperation,
      (message) => {
        const event = message as TenantOperationEvent;
        operations.inc({ operation: event.operation, outcome: event.outcome });
        if (event.operation === 'move' && event.outcome === 'succeeded' && event.code === 'LBMT_MOVE_SOURCE_KEPT') sourcesKept.inc();
      },
    ],
    [
      GUARD_CHANNELS.blocked,
      (message) => {
        const event = message as GuardViolationEvent;
        guardStatements.inc({ outcome: event.blocked ? 'blocked' : 'reported', code: known(GUARD_CODES, event.violations[0]?.code ?? 'LBMT_GUARD_REFUSED') });
      },
    ],
    [GUARD_CHANNELS.bypass, () => guardBypassed.inc()],
    [
      SYSTEM_CHANNEL,
      (message) => {
        const event = message as SystemContextEvent;
        systemContexts.inc({ access: event.write ? 'write' : 'read', outcome: event.outcome });
      },
    ],
    [JOB_CHANNELS.refused, (message) => jobsRefused.inc({ code: known(JOB_REFUSAL_CODES, (message as JobRefusedEvent).code) })],
    [JOB_CHANNELS.system, (message) => systemJobs.inc({ phase: (message as SystemJobEvent).phase })],
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
