/**
 * The example app as a function, so tests can run it against their own database. `npm start` runs
 * examples/enterprise.ts, which boots a database and calls this.
 *
 * Tenants are resolved by `multitenant()` from `X-Tenant-ID`, else `<slug>.<BASE_DOMAIN>`, through
 * the cached registry (invalidated across instances by LISTEN/NOTIFY when `core.listen()` runs).
 */
import type { Server } from 'node:http';
import Koa, { type Context, type Next } from 'koa';
import Router from '@koa/router';
import type pg from 'pg';
import {
  createMultitenant,
  PgTenantService,
  TenantAdminService,
  TenantDBPool,
  createTenantDb,
  type MultitenantCore,
  type PrepareMode,
  type TenancyConfig,
  type Tenant,
  type TenantPool,
} from '../src/index.js';
import { TenantMoveJobs, TenantPortability, type MoveTarget } from '../src/portability/index.js';
import {
  createAdminRouter,
  createPortabilityRouter,
  createMetricsRouter,
  createTenantRouter,
  metricsMiddleware,
  multitenant,
  problemFor,
  readJsonObject,
  refuseWritesWhileMoving,
  requireBearerToken,
  sendProblem,
  setRetryAfter,
  tenantRateLimit,
} from '../src/koa/index.js';
import { createMetrics, MetricsCollector } from '../src/metrics/index.js';
import { Registry } from 'prom-client';

export interface ExampleOptions {
  appPool: pg.Pool;
  adminPool: pg.Pool;
  tenancy: TenancyConfig;
  adminToken: string;
  baseDomain?: string;
  /** 'none' behind PgBouncer < 1.21 in transaction mode (no protocol-level prepared statements). */
  prepare?: PrepareMode;
  /** Requests per tenant per minute. Default 600. */
  rateLimitPerMinute?: number;
  /** Failed admin-token attempts per client per minute before 429. Default 10. */
  adminMaxFailures?: number;
  /** Databases tenants may be moved to (POST /admin/tenants/:id/move), by name. Default none. */
  moveTargets?: Readonly<Record<string, MoveTarget>>;
  /** Databases an export may be imported into (POST /admin/tenants/:id/import?into=), by name: owner-role pools. Default none. */
  importTargets?: Readonly<Record<string, TenantPool>>;
}

const MAX_INT4 = 2 ** 31 - 1;

export function createExampleApp(options: ExampleOptions): { app: Koa; core: MultitenantCore; jobs: TenantMoveJobs | undefined; close(): Promise<void> } {
  const { appPool, adminPool, tenancy } = options;
  // Constant-time token check, `Bearer ` required, 10 failed attempts per client per minute.
  const requireAdmin = requireBearerToken({ token: options.adminToken, maxFailures: options.adminMaxFailures ?? 10 });
  // The app role's pool, bound once to the tenancy and the prepare mode: every call below uses it.
  const db = createTenantDb(appPool, { tenancy, ...(options.prepare ? { prepare: options.prepare } : {}) });
  const core = createMultitenant({
    tenantService: new PgTenantService(appPool, { tenancy }),
    tenancy,
    strategies: ['header', 'subdomain'],
    baseDomain: options.baseDomain ?? 'localhost',
  });
  const registry = new Registry();
  const metrics = createMetrics({ registry, core, pools: { app: appPool, admin: adminPool } });
  const collector = new MetricsCollector();
  const app = new Koa();
  app.use(problemDetails);
  // Prometheus at GET /metrics, per-tenant figures at GET /admin/metrics/:tenantId (admin token).
  const metricsRouter = createMetricsRouter({ registry, collector, authorize: requireAdmin, tenancy });
  app.use(metricsRouter.routes());
  app.use(metricsMiddleware({ metrics, collector }));

  const router = new Router();
  router.get('/healthz', async (ctx) => {
    await appPool.query('SELECT 1');
    ctx.body = { ok: true };
  });

  // --- tenant API: every query below runs under RLS as the app role ---
  const api = createTenantRouter({ prefix: '/api' });
  api.get('/dashboard', async (ctx) => {
    const tenant = ctx.state.tenant as Tenant;
    const { rows } = await db.tenantQuery(undefined, 'SELECT count(*)::int AS orders, coalesce(sum(quantity), 0)::int AS items FROM orders');
    ctx.body = { tenant: { id: tenant.id, slug: tenant.slug, name: tenant.name }, ...rows[0] };
  });
  api.get('/orders', async (ctx) => {
    // No WHERE tenant_id: RLS decides which rows exist.
    const { rows } = await db.tenantQuery(undefined, 'SELECT id, item, quantity, created_at FROM orders ORDER BY id DESC LIMIT 100');
    ctx.body = { orders: rows };
  });
  api.get('/orders/:id', async (ctx) => {
    if (!/^\d{1,18}$/.test(ctx.params.id!)) ctx.throw(404);
    const { rows } = await db.tenantQuery(undefined, 'SELECT id, item, quantity, created_at FROM orders WHERE id = $1', [ctx.params.id]);
    if (rows.length === 0) ctx.throw(404);
    ctx.body = rows[0];
  });
  api.post('/orders', async (ctx) => {
    const body = await readJsonObject(ctx);
    const item = body.item;
    const quantity = body.quantity ?? 1;
    if (typeof item !== 'string' || item.length < 1 || item.length > 200 || item.includes('\u0000')) {
      ctx.throw(422, '`item` must be a string of 1 to 200 characters, without NUL');
    }
    if (typeof quantity !== 'number' || !Number.isSafeInteger(quantity) || quantity < 1 || quantity > MAX_INT4) {
      ctx.throw(422, `\`quantity\` must be an integer from 1 to ${MAX_INT4}`);
    }
    const order = await db.withTenantTransaction(
      undefined,
      async (tx) =>
        (await tx.query('INSERT INTO orders (tenant_id, item, quantity) VALUES ($1, $2, $3) RETURNING id, item, quantity, created_at', [tx.tenantId, item, quantity]))
          .rows[0],
    );
    ctx.status = 201;
    ctx.body = order;
  });

  // --- admin API: the registry, through the admin role (TenantAdminService, createAdminRouter) ---
  const tenantAdmin = new TenantAdminService(adminPool, { tenancy });
  // Tenant data at any size: GET /admin/tenants/:id/export (NDJSON stream), POST .../import?into=,
  // POST .../move (202, a durable job) and GET /admin/jobs/:id. Targets are named in the options.
  const pools = new TenantDBPool({ tenantService: core.tenants, sharedPool: db });
  const portability = new TenantPortability({ pools, admin: tenantAdmin, tenancy });
  // Moves are for the vanilla engine (on Citus the move routes answer 404; Citus moves shards instead).
  const jobs = tenancy.engine === 'citus' ? undefined : new TenantMoveJobs({ portability, adminPool, targets: options.moveTargets ?? {} });
  const portabilityRouter = createPortabilityRouter(portability, {
    authorize: requireAdmin,
    importTargets: options.importTargets ?? {},
    jobs,
    onMoveError: (error) => console.error('tenant move stopped; `jobs.resume()` finishes it', error),
  });
  // GET /admin/openapi.json (admin token): the OpenAPI 3.1 document of both routers' routes.
  const admin = createAdminRouter(tenantAdmin, {
    authorize: requireAdmin,
    openapi: { routers: [portabilityRouter], securitySchemes: { adminToken: { type: 'http', scheme: 'bearer' } } },
  });

  app.use(router.routes()).use(router.allowedMethods());
  app.use(admin.routes()).use(admin.allowedMethods());
  app.use(portabilityRouter.routes()).use(portabilityRouter.allowedMethods());
  // Tenant routes last: resolution runs only for requests no public or admin route answered.
  app.use(multitenant({ core, optional: true }));
  // A tenant being moved keeps its reads; its writes are 503 with Retry-After until the switch.
  app.use(refuseWritesWhileMoving({ db: appPool }));
  app.use(tenantRateLimit({ points: options.rateLimitPerMinute ?? 600, durationSeconds: 60 }));
  app.use(api.routes()).use(api.allowedMethods());
  return {
    app,
    core,
    jobs,
    close: async () => {
      metrics.close();
      await pools.closeAll();
    },
  };
}

/**
 * Node's defaults suit a trusted network: a request may take 300 s to arrive and connections are
 * unlimited, so a few slow clients hold the server. Bounds for a public one.
 */
export function hardenServer(server: Server): Server {
  server.headersTimeout = 10_000; // the request head must arrive within 10 s
  server.requestTimeout = 30_000; // the whole request (head and body) within 30 s
  server.keepAliveTimeout = 5_000;
  server.maxHeadersCount = 100;
  server.maxConnections = 1_000;
  return server;
}

/**
 * Every error as RFC 9457 problem+json (the library's mapping: TenantErrors keep status and code,
 * unexpected errors say nothing about internals), and a route nobody answered as a 404 problem.
 */
async function problemDetails(ctx: Context, next: Next): Promise<void> {
  try {
    await next();
    if (ctx.status === 404 && ctx.body === undefined) ctx.throw(404);
  } catch (error) {
    const problem = problemFor(error);
    if (problem.status >= 500 && problem.status !== 503) console.error(error);
    sendProblem(ctx, problem.status, problem.detail, problem.code, problem.errors);
    setRetryAfter(ctx, error);
  }
}
