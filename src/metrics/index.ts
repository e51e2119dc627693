/**
 * linkbay-multitenant/metrics: Prometheus metrics (prom-client, on a Registry you inject) fed by the
 * core's diagnostics channels, and the in-memory per-tenant MetricsCollector. prom-client is a peer
 * dependency of this subpath only.
 */
export { createMetrics, type Metrics, type MetricsOptions, type PoolStats } from './prometheus.js';
export {
  MetricsCollector,
  TenantLabels,
  statusClass,
  OTHER_TENANTS,
  type MetricsCollectorOptions,
  type TenantMetrics,
  type RequestObservation,
  type RequestOutcome,
} from './collector.js';
export { createCitusTenantMetrics, type CitusTenantMetricsOptions } from './citus.js';
