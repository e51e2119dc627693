/**
 * The example app as a function, so tests can run it against their own database. `npm start` runs
 * examples/enterprise.ts, which boots a database and calls this.
 *
 * Tenants are resolved by `multitenant()` from `X-Tenant-ID`, else `<slug>.<BASE_DOMAIN>`, through
 * the cached registry (invalidated across instances by LISTEN/NOTIFY when `core.listen()` runs).
 */
import { timingSafeEqual } from 'node:crypto';
import Koa, { type Context, type Next } from 'koa';
import Router from '@koa/router';
import type pg from 'pg';
import {
  createMultitenant,
  PgTenantService,
  TenantError,
  tryCanonicalTenantId,
  tenantQuery,
  withTenantTransaction,
  type MultitenantCore,
  type PrepareMode,
  type TenancyConfig,
  type Tenant,
} from '../src/index.js';
import { createMetricsRouter, createTenantRouter, metricsMiddleware, multitenant, tenantRateLimit } from '../src/koa/index.js';
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
}

class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    readonly detail?: string,
  ) {
    super(title);
  }
}

export function createExampleApp(options: ExampleOptions): { app: Koa; core: MultitenantCore; close(): void } {
  const { appPool, adminPool, tenancy } = options;
  const db = { tenancy, prepare: options.prepare };
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
    const { rows } = await tenantQuery(appPool, undefined, 'SELECT count(*)::int AS orders, coalesce(sum(quantity), 0)::int AS items FROM orders', [], db);
    ctx.body = { tenant: { id: tenant.id, slug: tenant.slug, name: tenant.name }, ...rows[0] };
  });
  api.get('/orders', async (ctx) => {
    // No WHERE tenant_id: RLS decides which rows exist.
    const { rows } = await tenantQuery(appPool, undefined, 'SELECT id, item, quantity, created_at FROM orders ORDER BY id DESC LIMIT 100', [], db);
    ctx.body = { orders: rows };
  });
  api.get('/orders/:id', async (ctx) => {
    if (!/^\d{1,18}$/.test(ctx.params.id!)) throw new HttpProblem(404, 'Not Found');
    const { rows } = await tenantQuery(appPool, undefined, 'SELECT id, item, quantity, created_at FROM orders WHERE id = $1', [ctx.params.id], db);
    if (rows.length === 0) throw new HttpProblem(404, 'Not Found');
    ctx.body = rows[0];
  });
  api.post('/orders', async (ctx) => {
    const body = await readJson(ctx);
    const item = body.item;
    const quantity = body.quantity ?? 1;
    if (typeof item !== 'string' || item.length < 1 || item.length > 200) throw new HttpProblem(422, 'Unprocessable Content', '`item` must be a string of 1 to 200 characters');
    if (typeof quantity !== 'number' || !Number.isSafeInteger(quantity) || quantity < 1) throw new HttpProblem(422, 'Unprocessable Content', '`quantity` must be a positive integer');
    const order = await withTenantTransaction(
      appPool,
      undefined,
      async (tx) =>
        (await tx.query('INSERT INTO orders (tenant_id, item, quantity) VALUES ($1, $2, $3) RETURNING id, item, quantity, created_at', [tx.tenantId, item, quantity]))
          .rows[0],
      db,
    );
    ctx.status = 201;
    ctx.body = order;
  });

  // --- admin API: the registry, through the admin role ---
  const admin = new Router({ prefix: '/admin' });
  admin.use(requireAdmin);
  const columns = 'id, slug, name, domain, status, plan, created_at, updated_at';
  admin.post('/tenants', async (ctx) => {
    const body = await readJson(ctx);
    const { slug, name, domain } = body;
    if (typeof slug !== 'string' || !/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(slug)) throw new HttpProblem(422, 'Unprocessable Content', '`slug` must be lower-case letters, digits and hyphens');
    if (typeof name !== 'string' || name.length < 1 || name.length > 200) throw new HttpProblem(422, 'Unprocessable Content', '`name` must be 1 to 200 characters');
    if (domain !== undefined && (typeof domain !== 'string' || !/^[a-z0-9.-]{1,253}$/.test(domain))) throw new HttpProblem(422, 'Unprocessable Content', '`domain` must be a lower-case host name');
    try {
      const { rows } = await adminPool.query(`INSERT INTO linkbay.tenants (slug, name, domain) VALUES ($1, $2, $3) RETURNING ${columns}`, [slug, name, domain ?? null]);
      ctx.status = 201;
      ctx.body = rows[0];
    } catch (error) {
      if ((error as { code?: string }).code === '23505') throw new HttpProblem(409, 'Conflict', 'slug or domain already taken');
      throw error;
    }
  });
  admin.get('/tenants', async (ctx) => {
    ctx.body = { tenants: (await adminPool.query(`SELECT ${columns} FROM linkbay.tenants ORDER BY created_at`)).rows };
  });
  admin.get('/tenants/:id', async (ctx) => {
    ctx.body = await adminTenant(ctx.params.id!);
  });
  for (const [action, status] of [['suspend', 'suspended'], ['activate', 'active']] as const) {
    admin.post(`/tenants/:id/${action}`, async (ctx) => {
      const id = await adminTenant(ctx.params.id!).then((t) => t.id);
      ctx.body = (await adminPool.query(`UPDATE linkbay.tenants SET status = $2 WHERE id = $1 RETURNING ${columns}`, [id, status])).rows[0];
    });
  }
  admin.delete('/tenants/:id', async (ctx) => {
    const id = await adminTenant(ctx.params.id!).then((t) => t.id);
    await adminPool.query(`UPDATE linkbay.tenants SET status = 'deleted' WHERE id = $1`, [id]);
    ctx.status = 204;
  });

  async function requireAdmin(ctx: Context, next: Next) {
    const header = ctx.get('authorization');
    if (!header) throw new HttpProblem(401, 'Unauthorized', 'send Authorization: Bearer <ADMIN_TOKEN>');
    const given = Buffer.from(header.replace(/^Bearer\s+/i, ''));
    const expected = Buffer.from(options.adminToken);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new HttpProblem(403, 'Forbidden');
    await next();
  }

  async function adminTenant(raw: string) {
    const id = tryCanonicalTenantId(raw, tenancy.tenantIdType);
    if (!id) throw new HttpProblem(404, 'Not Found');
    const { rows } = await adminPool.query(`SELECT ${columns} FROM linkbay.tenants WHERE id = $1`, [id]);
    if (!rows[0]) throw new HttpProblem(404, 'Not Found');
    return rows[0];
  }

  app.use(router.routes()).use(router.allowedMethods());
  app.use(admin.routes()).use(admin.allowedMethods());
  // Tenant routes last: resolution runs only for requests no public or admin route answered.
  app.use(multitenant({ core, optional: true }));
  app.use(tenantRateLimit({ points: options.rateLimitPerMinute ?? 600, durationSeconds: 60 }));
  app.use(api.routes()).use(api.allowedMethods());
  return { app, core, close: () => metrics.close() };
}

/** Renders every error as RFC 9457 problem+json; unexpected errors say nothing about internals. */
async function problemDetails(ctx: Context, next: Next): Promise<void> {
  try {
    await next();
    if (ctx.status === 404 && ctx.body === undefined) throw new HttpProblem(404, 'Not Found');
  } catch (error) {
    let status = 500;
    let title = 'Internal Server Error';
    let detail: string | undefined;
    let code: string | undefined;
    if (error instanceof HttpProblem) {
      ({ status, title, detail } = error);
    } else if (error instanceof TenantError) {
      status = error.status;
      code = error.code;
      title = error.expose ? error.message : status === 403 ? 'Forbidden' : 'Internal Server Error';
    } else {
      console.error(error);
    }
    ctx.status = status;
    ctx.type = 'application/problem+json';
    ctx.body = { type: 'about:blank', title, status, ...(detail ? { detail } : {}), ...(code ? { code } : {}) };
  }
}

const MAX_BODY_BYTES = 64 * 1024;

async function readJson(ctx: Context): Promise<Record<string, unknown>> {
  if (!ctx.is('application/json')) throw new HttpProblem(415, 'Unsupported Media Type', 'send application/json');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new HttpProblem(413, 'Content Too Large');
    chunks.push(chunk as Buffer);
  }
  try {
    const value = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('not an object');
    return value as Record<string, unknown>;
  } catch {
    throw new HttpProblem(422, 'Unprocessable Content', 'the body must be a JSON object');
  }
}
