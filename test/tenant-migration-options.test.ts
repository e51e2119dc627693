/** A move with a bad option is refused before anything happens: the tenant stays active, its rows where they were. */
import test from 'ava';
import { PgTenantService, TenantAdminService, TenantDBPool, TenantMigrationService } from '../src/index.js';
import { createTestDatabase, ORDERS_SCHEMA } from './helpers/db.js';

test('moveTenant with a bad option throws a TypeError naming it and leaves the tenant active', async (t) => {
  const shared = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  const target = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  const admin = new TenantAdminService(shared.adminPool, { tenancy: shared.config });
  const pools = new TenantDBPool({ tenantService: new PgTenantService(shared.appPool, { tenancy: shared.config }), sharedPool: shared.appPool, tenancy: shared.config });
  t.teardown(async () => {
    await pools.closeAll();
    await Promise.all([shared.drop(), target.drop()]);
  });
  const service = new TenantMigrationService({ pools, admin, tenancy: shared.config });
  const tenant = await admin.createTenant({ slug: 'stay', name: 'Stay' });
  await shared.superQuery(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'kept')`, [tenant.id]);
  const targetPool = target.pool(target.ownerUrl, { max: 1 });
  const bad = [
    [{ databaseUrl: target.appUrl, targetPool, settleMs: -5 }, /settleMs/],
    [{ databaseUrl: target.appUrl, targetPool, settleMs: 1.5 }, /settleMs/],
    [{ databaseUrl: target.appUrl, targetPool: undefined as never, settleMs: 0 }, /targetPool/],
    [{ databaseUrl: 42 as never, targetPool, settleMs: 0 }, /databaseUrl/],
  ] as const;
  for (const [options, message] of bad) {
    await t.throwsAsync(service.moveTenant(tenant.id, options), { instanceOf: TypeError, message });
    t.is((await admin.getTenant(tenant.id)).status, 'active', `still active after ${message}`);
  }
  t.is((await shared.superQuery(`SELECT count(*)::int AS n FROM orders WHERE tenant_id = $1`, [tenant.id])).rows[0].n, 1);
  t.is((await target.superQuery(`SELECT count(*)::int AS n FROM orders`)).rows[0].n, 0);
});
