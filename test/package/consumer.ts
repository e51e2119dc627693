/**
 * A consumer of the packed package, as a user writes one: every public subpath imported by its
 * package name, compiled by test/package/check.ts under `tsc --strict` without skipLibCheck, then
 * run against a real PostgreSQL (DATABASE_URL, a superuser URL: the database and roles it creates
 * are dropped at the end). Exits non-zero when anything is not as the README says.
 */
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import pg from 'pg';
import { Registry } from 'prom-client';
import {
  createMultitenant,
  defineTenancy,
  generateRlsSql,
  migrateFiles,
  PgTenantService,
  tenantQuery,
  TenantAdminService,
  TenantError,
  withTenantTransaction,
  checkPosture,
  createTenantDb,
  tenantLogMixin,
  type Tenant,
} from 'linkbay-multitenant';
import { createTenantRouter, multitenant, problemDetails } from 'linkbay-multitenant/koa';
import { createMetrics, MetricsCollector } from 'linkbay-multitenant/metrics';
import { assertTenantIsolation } from 'linkbay-multitenant/testing';
import { tenantKysely } from 'linkbay-multitenant/kysely';
import { instrumentTenancy } from 'linkbay-multitenant/otel';
import { apiKeysSql } from 'linkbay-multitenant/auth';
import { tenantEnvelope, type TenantJob } from 'linkbay-multitenant/jobs';

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`consumer check failed: ${what}`);
  console.log(`ok - ${what}`);
}

const server = process.env.DATABASE_URL;
if (!server) throw new Error('DATABASE_URL (a superuser URL) is required');
const suffix = randomBytes(4).toString('hex');
const database = `lbmt_pkg_${suffix}`;
const password = randomBytes(12).toString('hex');
const tenancy = defineTenancy({ tables: ['notes'], roles: { owner: `pkg${suffix}_owner`, app: `pkg${suffix}_app`, admin: `pkg${suffix}_admin` } });
const urlAs = (user?: string) => {
  const url = new URL(server);
  url.pathname = `/${database}`;
  if (user) {
    url.username = user;
    url.password = password;
  }
  return url.toString();
};

const root = new pg.Client({ connectionString: server });
await root.connect();
await root.query(`CREATE DATABASE ${database}`);
const pools: pg.Pool[] = [];
let tearingDown = false;
const pool = (url: string) => {
  const created = new pg.Pool({ connectionString: url, max: 4 });
  // A backend that DROP DATABASE ... WITH FORCE ends while its socket closes is expected then only.
  created.on('error', (error) => {
    if (!tearingDown) throw error;
  });
  pools.push(created);
  return created;
};
try {
  const files = generateRlsSql(tenancy);
  const setup = pool(urlAs());
  await setup.query(files[0]!.sql); // the roles, so the table can be created for them
  for (const role of Object.values(tenancy.roles)) await setup.query(`ALTER ROLE ${role} PASSWORD '${password}'`);
  await setup.query(`CREATE TABLE notes (tenant_id uuid NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY, body text NOT NULL, PRIMARY KEY (tenant_id, id))`);
  await migrateFiles({ databaseUrl: urlAs(), files });

  const app = pool(urlAs(tenancy.roles.app));
  const adminPool = pool(urlAs(tenancy.roles.admin));
  const admin = new TenantAdminService(adminPool, { tenancy });
  const a: Tenant = await admin.createTenant({ slug: 'acme', name: 'Acme' });
  const b: Tenant = await admin.createTenant({ slug: 'globex', name: 'Globex' });

  for (const tenant of [a, b]) {
    await withTenantTransaction(app, tenant.id, async (tx) => {
      await tx.query('INSERT INTO notes (tenant_id, body) VALUES ($1, $2)', [tenant.id, `${tenant.slug} note`]);
    });
  }
  const seen = await tenantQuery<{ body: string }>(app, a.id, 'SELECT body FROM notes');
  check(seen.rows.length === 1 && seen.rows[0]!.body === 'acme note', 'tenantQuery sees exactly its tenant’s row (RLS, no WHERE)');
  const forged = await tenantQuery(app, a.id, 'INSERT INTO notes (tenant_id, body) VALUES ($1, $2)', [b.id, 'forged']).then(
    () => 'accepted',
    (error: unknown) => (error instanceof TenantError ? error.code : String(error)),
  );
  check(forged === 'LBMT_ISOLATION_VIOLATION', `a write for another tenant is refused (${forged})`);

  const report = await assertTenantIsolation({ appPool: app, adminPool, config: tenancy, tenants: [a.id, b.id] });
  check(report.tables.length === 1, 'assertTenantIsolation checked the tenant table');
  const posture = await checkPosture(adminPool, tenancy);
  check(posture.findings.every((f) => f.severity !== 'error'), 'checkPosture finds nothing that breaks isolation');

  // The integration subpaths, with their optional peers installed (jose, pg-boss, bullmq are not
  // needed by their declarations and are not installed here). Not /drizzle: drizzle-orm's own
  // declarations do not compile under exactOptionalPropertyTypes without skipLibCheck.
  const tracing = instrumentTenancy(); // no provider registered: a no-op tracer
  const handle = createTenantDb(app, { tenancy });
  const kysely = tenantKysely<{ notes: { tenant_id: string; id: string; body: string } }>(handle, { tenantId: a.id });
  const viaKysely = await kysely.selectFrom('notes').select('body').execute();
  check(viaKysely.length === 1 && viaKysely[0]!.body === 'acme note', 'linkbay-multitenant/kysely sees its tenant’s row only');
  tracing.close();
  const envelope = tenantEnvelope({ note: 1 }, a.id, tenancy);
  const job: TenantJob<{ note: number }> = { id: '1', name: 'notes', tenantId: a.id, data: envelope.data };
  check(job.data.note === 1 && apiKeysSql(tenancy).sql.includes('tenant_for_api_key') && Object.keys(tenantLogMixin()).length === 0, 'the jobs, auth and log helpers load');

  const registry = new Registry();
  const core = createMultitenant({ tenantService: new PgTenantService(app, { tenancy }), tenancy });
  const metrics = createMetrics({ registry, core, pools: { app } });
  const collector = new MetricsCollector();
  const web = new Koa();
  web.use(problemDetails());
  web.use(multitenant({ core }));
  const router = createTenantRouter();
  router.get('/notes', async (ctx) => {
    ctx.body = (await tenantQuery<{ body: string }>(app, undefined, 'SELECT body FROM notes')).rows; // tenant from the context
  });
  web.use(router.routes());
  const listening = web.listen(0, '127.0.0.1');
  await new Promise((resolve) => listening.once('listening', resolve));
  try {
    const base = `http://127.0.0.1:${(listening.address() as AddressInfo).port}`;
    const response = await fetch(`${base}/notes`, { headers: { 'x-tenant-id': b.id } });
    const body = (await response.json()) as Array<{ body: string }>;
    check(response.status === 200 && body.length === 1 && body[0]!.body === 'globex note', 'the Koa middleware scopes a request to its tenant');
    const missing = await fetch(`${base}/notes`);
    check(missing.status === 400 || missing.status === 401 || missing.status === 404, `a request without a tenant is refused (${missing.status})`);
    await missing.arrayBuffer();
  } finally {
    await new Promise((resolve) => listening.close(resolve));
  }
  check((await registry.metrics()).includes('lbmt_'), 'the metrics register on the injected registry');
  void metrics;
  void collector;
} finally {
  tearingDown = true;
  await Promise.all(pools.map((p) => p.end()));
  await root.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  for (const role of Object.values(tenancy.roles)) await root.query(`DROP ROLE IF EXISTS ${role}`);
  await root.end();
}
