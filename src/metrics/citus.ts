/**
 * Per-tenant figures of a Citus cluster as Prometheus gauges, read from citus_stat_tenants at
 * scrape time (src/citus/placement.ts `tenantStatistics`): queries and CPU seconds of the current
 * period for the `topN` busiest tenants, the rest summed under `tenant="other"`, so the label has at
 * most topN + 1 values. Needs `citus.stat_tenants_track = 'all'`, and a pool whose role may call
 * citus_stat_tenants (a superuser, or EXECUTE granted on it and citus_stat_tenants_local).
 */
import { Gauge, type Registry } from 'prom-client';
import { tenantStatistics, type TenantStatistic } from '../citus/placement.js';
import type { Queryable } from '../posture/queries.js';
import { OTHER_TENANTS } from './collector.js';

export interface CitusTenantMetricsOptions {
  registry: Registry;
  /** Read at each scrape. */
  pool: Queryable;
  /** Tenants with their own label value. Default 20. */
  topN?: number;
  /** Default `lbmt_`. */
  prefix?: string;
}

export function createCitusTenantMetrics(options: CitusTenantMetricsOptions): void {
  const topN = options.topN ?? 20;
  if (!Number.isInteger(topN) || topN <= 0) throw new TypeError('`topN` must be an integer greater than 0');
  const prefix = options.prefix ?? 'lbmt_';
  const registers = [options.registry];
  // One read per scrape for both gauges: the first collect() reads, the second reuses it.
  let pending: Promise<Map<string, TenantStatistic[]>> | undefined;
  const read = () => {
    pending ??= tenantStatistics(options.pool).then(group).finally(() => setImmediate(() => (pending = undefined)));
    return pending;
  };
  const gauge = (name: string, help: string, pick: (s: TenantStatistic) => number) =>
    new Gauge({
      name: `${prefix}${name}`,
      help,
      labelNames: ['tenant'] as const,
      registers,
      async collect() {
        this.reset();
        for (const [tenant, rows] of await read()) this.set({ tenant }, rows.reduce((sum, s) => sum + pick(s), 0));
      },
    });
  gauge('citus_tenant_queries', 'Queries routed to each tenant in the current citus_stat_tenants period (top tenants; the rest as "other")', (s) => s.queriesThisPeriod);
  gauge('citus_tenant_cpu_seconds', 'CPU seconds of each tenant in the current citus_stat_tenants period (top tenants; the rest as "other")', (s) => s.cpuSecondsThisPeriod);

  /** The topN busiest tenants by their own id, every other one under OTHER_TENANTS. */
  function group(stats: TenantStatistic[]): Map<string, TenantStatistic[]> {
    const totals = new Map<string, number>();
    // Ranked by both periods, so that a tenant keeps its label across a period boundary.
    for (const s of stats) totals.set(s.tenantId, (totals.get(s.tenantId) ?? 0) + s.queriesThisPeriod + s.queriesLastPeriod);
    const top = new Set([...totals].filter(([id]) => id !== OTHER_TENANTS).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, topN).map(([id]) => id));
    const out = new Map<string, TenantStatistic[]>();
    for (const s of stats) {
      const key = top.has(s.tenantId) ? s.tenantId : OTHER_TENANTS;
      out.set(key, [...(out.get(key) ?? []), s]);
    }
    return out;
  }
}
