import { AsyncLocalStorage } from 'node:async_hooks';
import diagnostics from 'node:diagnostics_channel';
import Router from '@koa/router';
import type { Middleware } from 'koa';
import { DEFAULT_TENANCY, type TenancyConfig } from '../config.js';
import { CHANNELS, type ResolutionEvent } from '../events.js';
import { tryCanonicalTenantId } from '../tenant-id.js';
import type { MetricsCollector, RequestObservation } from '../metrics/collector.js';
import { sendProblem } from './problem.js';

export interface MetricsMiddlewareOptions {
  /** From `createMetrics()` (linkbay-multitenant/metrics): Prometheus request metrics. */
  metrics?: { observeRequest(request: RequestObservation): void };
  /** A MetricsCollector: per-tenant figures for `GET /admin/metrics/:tenantId`. */
  collector?: Pick<MetricsCollector, 'recordRequest'>;
}

interface RequestScope {
  outcome?: ResolutionEvent['outcome'];
}

// The core publishes each resolution synchronously inside the request that caused it, so the
// request's AsyncLocalStorage store is current in the subscriber: that is how a request learns how
// its resolution ended without the core or multitenant() knowing about metrics.
const requestScope = new AsyncLocalStorage<RequestScope>();
let watchingResolutions = false;

function watchResolutions(): void {
  if (watchingResolutions) return;
  watchingResolutions = true;
  diagnostics.subscribe(CHANNELS.resolution, (message) => {
    const scope = requestScope.getStore();
    if (scope) scope.outcome = (message as ResolutionEvent).outcome;
  });
}

/**
 * Records every request's duration, status and tenant-resolution outcome. Mount it BEFORE
 * `multitenant()`, so requests refused for their tenant (400, 403, 404) are counted too; it reads
 * the tenant from `ctx.state.tenant` once the rest of the app is done. The duration ends when the
 * downstream middleware resolves (before a streamed body is sent). Requests without a tenant go to
 * the Prometheus metrics only, never to the collector.
 *
 * @example
 * app.use(problemDetails());
 * app.use(metricsMiddleware({ metrics: createMetrics({ registry, core }), collector }));
 * app.use(multitenant({ core }));
 */
export function metricsMiddleware(options: MetricsMiddlewareOptions = {}): Middleware {
  const { metrics, collector } = options;
  if (!metrics && !collector) throw new TypeError('metricsMiddleware needs `metrics`, `collector` or both');
  if (metrics) watchResolutions();
  return async function metricsMiddleware(ctx, next) {
    const started = performance.now();
    const scope: RequestScope = {};
    let status: number | undefined;
    try {
      await requestScope.run(scope, next);
    } catch (error) {
      // Rendered by Koa (or an outer error middleware) with the error's status, else 500.
      const s = (error as { status?: unknown })?.status;
      status = typeof s === 'number' && s >= 400 && s < 600 ? s : 500;
      throw error;
    } finally {
      const durationMs = performance.now() - started;
      status ??= ctx.status;
      const tenantId: string | undefined = ctx.state.tenant?.id;
      metrics?.observeRequest({ durationMs, status, outcome: scope.outcome ?? 'none', tenantId });
      if (collector && tenantId !== undefined) collector.recordRequest(tenantId, durationMs, status);
    }
  };
}

export interface MetricsRouterOptions {
  /** The registry the metrics live on (a prom-client Registry): served at `GET /metrics`. */
  registry: { metrics(): Promise<string>; readonly contentType: string };
  /** Serves `GET /admin/metrics` (all tracked tenants) and `GET /admin/metrics/:tenantId`. */
  collector?: Pick<MetricsCollector, 'getTenantMetrics' | 'getAllTenantMetrics'>;
  /** Guards the `/admin/metrics` routes; required with `collector` (per-tenant figures are admin data). */
  authorize?: Middleware;
  /** Guards `GET /metrics`. Default: none; serve it on an internal network or pass one. */
  authorizeScrape?: Middleware;
  /** How `:tenantId` is canonicalised. Default `defineTenancy()`'s: uuid. */
  tenancy?: TenancyConfig;
}

/**
 * `GET /metrics` (Prometheus text format) and, with a collector, `GET /admin/metrics/:tenantId`
 * (JSON `{ tenantId, requests, errors, avgLatencyMs, p95LatencyMs }`) behind `authorize`. Mount
 * its routes before `multitenant()` (they name no tenant) and after `metricsMiddleware` only if
 * scrapes should be counted.
 *
 * @example
 * const router = createMetricsRouter({ registry, collector, authorize: requireAdminToken() });
 * app.use(router.routes()).use(metricsMiddleware({ metrics, collector })).use(multitenant({ core }));
 */
export function createMetricsRouter(options: MetricsRouterOptions): Router {
  const { registry, collector, authorize, authorizeScrape } = options;
  if (!registry) throw new TypeError('`registry` is required');
  if (collector && !authorize) throw new TypeError('`authorize` is required with `collector`: per-tenant figures are admin data');
  const idType = (options.tenancy ?? DEFAULT_TENANCY).tenantIdType;
  const router = new Router();
  const scrape: Middleware = async function scrapeMetrics(ctx) {
    const body = await registry.metrics();
    ctx.set('Content-Type', registry.contentType);
    ctx.body = body;
  };
  if (authorizeScrape) router.get('/metrics', authorizeScrape, scrape);
  else router.get('/metrics', scrape);
  if (collector && authorize) {
    router.get('/admin/metrics', authorize, function allTenantMetrics(ctx) {
      ctx.body = collector.getAllTenantMetrics();
    });
    router.get('/admin/metrics/:tenantId', authorize, function tenantMetrics(ctx) {
      const id = tryCanonicalTenantId(ctx.params.tenantId, idType);
      if (id === undefined) return sendProblem(ctx, 400, 'not a valid tenant id', 'LBMT_INVALID_TENANT_ID');
      ctx.body = collector.getTenantMetrics(id);
    });
  }
  return router;
}
