/**
 * Per-tenant statistics from citus_stat_tenants, as rows and as bounded Prometheus gauges. Alone in
 * its file: the statistics of a node cover every database on it, so no other test may run queries
 * on this cluster meanwhile.
 */
import test from 'ava';
import { Registry } from 'prom-client';
import { tenantQuery } from '../src/index.js';
import { tenantStatistics } from '../src/citus/index.js';
import { createCitusTenantMetrics } from '../src/metrics/index.js';
import { createCitusTestDatabase, CITUS_SCHEMA, CITUS_TABLES, useCitusCluster } from './helpers/citus-db.js';
import { newTenantId } from './helpers/db.js';

const { citusTest, cluster } = useCitusCluster(test);

citusTest('tenantStatistics reports the queries routed to each tenant, also as bounded Prometheus gauges', async (t) => {
  const c = cluster();
  const db = await createCitusTestDatabase(c, { schema: CITUS_SCHEMA, tenancy: CITUS_TABLES });
  t.teardown(() => db.drop());
  const [a, b] = [newTenantId(), newTenantId()];
  const options = { tenancy: db.config };
  for (let i = 0; i < 5; i += 1) await tenantQuery(db.appPool, a, 'SELECT count(*) FROM orders WHERE tenant_id = $1', [a], options);
  await tenantQuery(db.appPool, b, 'SELECT count(*) FROM orders WHERE tenant_id = $1', [b], options);
  const superPool = { query: (text: string, values?: unknown[]) => db.superQuery(text, values) };
  const stats = await tenantStatistics(superPool);
  // One row per tenant and node (and the cluster's other databases' tenants too).
  const sum = (tenant: string, pick: (s: (typeof stats)[number]) => number) => stats.filter((s) => s.tenantId === tenant).reduce((n, s) => n + pick(s), 0);
  const queries = (tenant: string) => sum(tenant, (s) => s.queriesThisPeriod + s.queriesLastPeriod);
  t.true(stats.some((s) => s.tenantId === a), JSON.stringify(stats));
  t.true(queries(a) >= 5);
  t.true(queries(b) >= 1);
  t.true(queries(a) > queries(b));

  // The same figures as Prometheus gauges: with topN 1, tenant a by name and b under "other".
  const registry = new Registry();
  createCitusTenantMetrics({ registry, pool: superPool, topN: 1 });
  const text = await registry.metrics();
  const value = (tenant: string) => Number(new RegExp(`lbmt_citus_tenant_queries\\{tenant="${tenant}"\\} (\\d+)`).exec(text)?.[1]);
  t.is(value(a), sum(a, (s) => s.queriesThisPeriod), text); // the same period (a day long here)
  t.true(value('other') >= sum(b, (s) => s.queriesThisPeriod));
  t.false(text.includes(b), 'b is not a label value');
  t.regex(text, /lbmt_citus_tenant_cpu_seconds\{tenant="other"\}/);
});
