import type { ResolutionEvent } from '../events.js';

/**
 * How a request's tenant resolution ended (the core's ResolutionEvent outcome), or `none` when no
 * resolution ran for it (a route mounted before `multitenant()`, such as `/metrics` or `/healthz`).
 */
export type RequestOutcome = ResolutionEvent['outcome'] | 'none';

/** What a middleware reports about one finished HTTP request. */
export interface RequestObservation {
  readonly durationMs: number;
  readonly status: number;
  readonly outcome: RequestOutcome;
  /** Canonical id of the request's tenant, when it had one. */
  readonly tenantId?: string;
}

export interface MetricsCollectorOptions {
  /** Most tenants tracked; the least recently seen is dropped for a new one. Default 1000. */
  maxTenants?: number;
  /** How many of each tenant's most recent latencies `p95LatencyMs` is computed over. Default 256. */
  latencyWindow?: number;
}

/** One tenant's figures since the collector started tracking it. */
export interface TenantMetrics {
  readonly tenantId: string;
  readonly requests: number;
  /** Responses with a 5xx status (the server failed; 4xx are the client's). */
  readonly errors: number;
  /** Mean latency over every request counted in `requests`. */
  readonly avgLatencyMs: number;
  /** 95th percentile (nearest rank) over the tenant's last `latencyWindow` requests. */
  readonly p95LatencyMs: number;
}

const DEFAULTS: Required<MetricsCollectorOptions> = { maxTenants: 1000, latencyWindow: 256 };

class TenantFigures {
  requests = 0;
  errors = 0;
  totalMs = 0;
  // A ring of the latest latencies: a fixed-size "reservoir" of the most recent requests, so the
  // memory per tenant is `latencyWindow` numbers whatever the traffic.
  private readonly latest: Float64Array;
  private next = 0;
  private filled = 0;

  constructor(window: number) {
    this.latest = new Float64Array(window);
  }

  add(durationMs: number, status: number): void {
    this.requests += 1;
    if (status >= 500) this.errors += 1;
    this.totalMs += durationMs;
    this.latest[this.next] = durationMs;
    this.next = (this.next + 1) % this.latest.length;
    this.filled = Math.min(this.filled + 1, this.latest.length);
  }

  p95(): number {
    if (this.filled === 0) return 0;
    const sorted = this.latest.slice(0, this.filled).sort();
    return sorted[Math.ceil(0.95 * this.filled) - 1]!;
  }
}

/**
 * In-memory per-tenant request figures (the seed's MetricsCollector), for an admin endpoint such as
 * `GET /admin/metrics/:tenantId`. Bounded: at most `maxTenants` tenants, the least recently seen
 * dropped first; each keeps its counts and its last `latencyWindow` latencies. Per process and lost
 * on restart: for fleet-wide figures use the Prometheus metrics (`createMetrics`).
 *
 * @example
 * const collector = new MetricsCollector({ maxTenants: 5_000 });
 * app.use(metricsMiddleware({ collector })).use(multitenant({ core }));
 * collector.getTenantMetrics(tenantId); // { tenantId, requests, errors, avgLatencyMs, p95LatencyMs }
 */
export class MetricsCollector {
  readonly maxTenants: number;
  readonly latencyWindow: number;
  // A Map iterates in insertion order; re-inserting on every request keeps the least recently seen
  // tenant first, which makes it an LRU without another dependency.
  private readonly tenants = new Map<string, TenantFigures>();

  constructor(options: MetricsCollectorOptions = {}) {
    const o = { ...DEFAULTS, ...options };
    for (const key of Object.keys(DEFAULTS) as Array<keyof MetricsCollectorOptions>) {
      if (!Number.isInteger(o[key]) || o[key] <= 0) throw new TypeError(`\`${key}\` must be an integer greater than 0`);
    }
    this.maxTenants = o.maxTenants;
    this.latencyWindow = o.latencyWindow;
  }

  /** Counts one finished request of `tenantId` (a canonical id: the middleware passes `ctx.state.tenant.id`). */
  recordRequest(tenantId: string, durationMs: number, status: number): void {
    if (!Number.isFinite(durationMs) || durationMs < 0) throw new TypeError('`durationMs` must be a finite number >= 0');
    let figures = this.tenants.get(tenantId);
    if (figures) {
      this.tenants.delete(tenantId);
    } else {
      figures = new TenantFigures(this.latencyWindow);
      if (this.tenants.size >= this.maxTenants) this.tenants.delete(this.tenants.keys().next().value!);
    }
    this.tenants.set(tenantId, figures);
    figures.add(durationMs, status);
  }

  /** The tenant's figures; all zero for a tenant with no request tracked (never seen, or dropped). */
  getTenantMetrics(tenantId: string): TenantMetrics {
    const figures = this.tenants.get(tenantId);
    if (!figures) return { tenantId, requests: 0, errors: 0, avgLatencyMs: 0, p95LatencyMs: 0 };
    return {
      tenantId,
      requests: figures.requests,
      errors: figures.errors,
      avgLatencyMs: figures.totalMs / figures.requests,
      p95LatencyMs: figures.p95(),
    };
  }

  /** Every tracked tenant's figures, most recently seen last. */
  getAllTenantMetrics(): TenantMetrics[] {
    return [...this.tenants.keys()].map((id) => this.getTenantMetrics(id));
  }

  /** How many tenants are tracked (never more than `maxTenants`). */
  get size(): number {
    return this.tenants.size;
  }

  clear(): void {
    this.tenants.clear();
  }
}

/** `2xx`, `4xx`, ...: the status label value (five values, plus `unknown` for a non-HTTP status). */
export function statusClass(status: number): string {
  const hundreds = Math.floor(status / 100);
  return hundreds >= 1 && hundreds <= 5 ? `${hundreds}xx` : 'unknown';
}

/** The shared label value of every tenant without its own. */
export const OTHER_TENANTS = 'other';

/**
 * Chooses which tenants get their own value of the Prometheus `tenant` label, so that it has at
 * most `topN + 1` values (`topN` tenant ids and `other`) however many tenants there are.
 *
 * - Recent activity is counted per tenant in a map of at most `max(100, 10 × topN)` entries (a new
 *   tenant evicts the least active one) and halved at every re-rank, so old traffic fades.
 * - `rerank()` (called at each scrape) gives the `topN` most active tenants their own label; a
 *   tenant that leaves the top N loses its series and its requests count as `other` from then on.
 *   Between scrapes, free slots go to the first tenants seen.
 * - A labelled tenant's counts start at 0 when it gets its label; `other` is everything else
 *   (all requests minus the labelled tenants' counts), so `other` never decreases and the series
 *   always sum to the exact number of tenant requests.
 */
export class TenantLabels {
  readonly topN: number;
  private readonly capacity: number;
  private readonly activity = new Map<string, number>();
  private readonly labelled = new Map<string, Map<string, number>>();
  private readonly totals = new Map<string, number>();

  constructor(topN: number) {
    if (!Number.isInteger(topN) || topN <= 0) throw new TypeError('`tenantLabel.topN` must be an integer greater than 0');
    this.topN = topN;
    this.capacity = Math.max(100, topN * 10);
  }

  record(tenantId: string, status: string): void {
    increment(this.totals, status);
    const seen = this.activity.get(tenantId);
    if (seen === undefined && this.activity.size >= this.capacity) this.evictLeastActive();
    this.activity.set(tenantId, (seen ?? 0) + 1);
    let own = this.labelled.get(tenantId);
    // A tenant whose id is literally "other" (text ids) is never labelled: it would merge with the rest.
    if (!own && this.labelled.size < this.topN && tenantId !== OTHER_TENANTS) {
      own = new Map();
      this.labelled.set(tenantId, own);
    }
    if (own) increment(own, status);
  }

  rerank(): void {
    const ranked = [...this.activity]
      .filter(([id]) => id !== OTHER_TENANTS)
      // Most active first; on a tie the tenant that already has a label keeps it.
      .sort((a, b) => b[1] - a[1] || Number(this.labelled.has(b[0])) - Number(this.labelled.has(a[0])));
    const top = new Set(ranked.slice(0, this.topN).map(([id]) => id));
    for (const id of [...this.labelled.keys()]) if (!top.has(id)) this.labelled.delete(id);
    for (const id of top) if (!this.labelled.has(id)) this.labelled.set(id, new Map());
    for (const [id, count] of this.activity) {
      const halved = Math.floor(count / 2);
      if (halved === 0) this.activity.delete(id);
      else this.activity.set(id, halved);
    }
  }

  /** The current series: labelled tenants' counts, then `other`. */
  series(): Array<{ tenant: string; statusClass: string; count: number }> {
    const out: Array<{ tenant: string; statusClass: string; count: number }> = [];
    const other = new Map(this.totals);
    for (const [tenant, counts] of this.labelled) {
      for (const [status, count] of counts) {
        out.push({ tenant, statusClass: status, count });
        other.set(status, other.get(status)! - count);
      }
    }
    for (const [status, count] of other) out.push({ tenant: OTHER_TENANTS, statusClass: status, count });
    return out;
  }

  private evictLeastActive(): void {
    let least: string | undefined;
    let leastCount = Infinity;
    for (const [id, count] of this.activity) {
      if (count < leastCount) {
        least = id;
        leastCount = count;
      }
    }
    if (least !== undefined) this.activity.delete(least);
  }
}

function increment(counts: Map<string, number>, key: string): void {
  counts.set(key, (counts.get(key) ?? 0) + 1);
}
