/**
 * The HTTP benchmark's server, run in its own process (so the load generator does not share its
 * event loop). Prints `{"port": N}` on stdout once listening.
 *
 *   GET /bare/ping                no tenant middleware: { ok: true }
 *   GET /mt/ping                  behind multitenant() (warm cache): { ok: true }
 *   GET /mt/orders/:id            multitenant() + tenantQuery of one row under RLS
 *   GET /bare/orders/:tenant/:id  pool.query of the same row with an explicit WHERE, no RLS
 */
import Koa from 'koa';
import Router from '@koa/router';
import pg from 'pg';
import { createMultitenant, defineTenancy, PgTenantService, tenantQuery } from '../src/index.js';
import { multitenant } from '../src/koa/index.js';

const appUrl = process.env.BENCH_APP_URL!;
const tenancy = defineTenancy(JSON.parse(process.env.BENCH_TENANCY!));
const pool = new pg.Pool({ connectionString: appUrl, max: 8 });
const core = createMultitenant({ tenantService: new PgTenantService(pool, { tenancy }), tenancy });
const tenantMiddleware = multitenant({ core });

const app = new Koa();
app.use((ctx, next) => (ctx.path.startsWith('/mt/') ? tenantMiddleware(ctx, next) : next()));
const router = new Router();
router.get('/bare/ping', (ctx) => {
  ctx.body = { ok: true };
});
router.get('/mt/ping', (ctx) => {
  ctx.body = { ok: true };
});
router.get('/mt/orders/:id', async (ctx) => {
  const { rows } = await tenantQuery(pool, undefined, 'SELECT id, item FROM orders WHERE id = $1', [ctx.params.id], { tenancy });
  ctx.body = rows[0] ?? null;
});
router.get('/bare/orders/:tenant/:id', async (ctx) => {
  const { rows } = await pool.query('SELECT id, item FROM orders_plain WHERE tenant_id = $1 AND id = $2', [ctx.params.tenant, ctx.params.id]);
  ctx.body = rows[0] ?? null;
});
app.use(router.routes());
const server = app.listen(0, '127.0.0.1', () => {
  const address = server.address();
  console.log(JSON.stringify({ port: typeof address === 'object' && address ? address.port : 0 }));
});
process.on('SIGTERM', () => {
  server.closeAllConnections();
  server.close();
  void pool.end().finally(() => process.exit(0));
});
