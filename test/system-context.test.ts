/** withSystemContext: cross-tenant work on the admin pool, named, read-only unless asked, outside any tenant. */
import diagnostics from 'node:diagnostics_channel';
import test from 'ava';
import { SYSTEM_CHANNEL, TenantContext, withSystemContext, type SystemContextEvent } from '../src/index.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA } from './helpers/db.js';

test('reads every tenant, refuses writes unless asked, carries its reason, leaves the tenant context, and is published', async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  t.teardown(() => db.drop());
  const [a, b] = [newTenantId(), newTenantId()];
  await db.superQuery(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'a1'), ($1, 'a2'), ($2, 'b1')`, [a, b]);
  const events: SystemContextEvent[] = [];
  const listener = (event: unknown) => events.push(event as SystemContextEvent);
  diagnostics.subscribe(SYSTEM_CHANNEL, listener);
  t.teardown(() => diagnostics.unsubscribe(SYSTEM_CHANNEL, listener));

  for (const reason of ['', '   ', 'x'.repeat(201), 'line\nbreak', undefined as never]) {
    await t.throwsAsync(withSystemContext(db.adminPool, { reason }, () => 1), { instanceOf: TypeError, message: /reason/ });
  }

  const seen = await TenantContext.run(a, () =>
    withSystemContext(db.adminPool, { reason: 'monthly invoicing' }, async (sys) => ({
      tenant: TenantContext.getTenantId(),
      totals: (await sys.query<{ tenant_id: string; n: number }>('SELECT tenant_id::text, count(*)::int AS n FROM orders GROUP BY 1 ORDER BY 2 DESC')).rows,
      reason: (await sys.query<{ r: string }>(`SELECT current_setting('linkbay.system_reason') AS r`)).rows[0]!.r,
    })),
  );
  t.is(seen.tenant, undefined, 'no tenant inside the system context');
  t.deepEqual(seen.totals, [{ tenant_id: a, n: 2 }, { tenant_id: b, n: 1 }], 'every tenant, through the admin role');
  t.is(seen.reason, 'monthly invoicing');

  const refused = await t.throwsAsync(withSystemContext(db.adminPool, { reason: 'cleanup' }, (sys) => sys.query(`DELETE FROM orders WHERE item = 'b1'`)));
  t.is((refused as { code?: string }).code, '25006', 'read only unless asked');
  await withSystemContext(db.adminPool, { reason: 'cleanup', write: true }, (sys) => sys.query(`DELETE FROM orders WHERE item = 'b1'`));
  await t.throwsAsync(
    withSystemContext(db.adminPool, { reason: 'half-done', write: true }, async (sys) => {
      await sys.query(`DELETE FROM orders WHERE item = 'a1'`);
      throw new Error('changed my mind');
    }),
    { message: 'changed my mind' },
  );
  t.deepEqual((await db.superQuery('SELECT item FROM orders ORDER BY item')).rows.map((r) => r.item), ['a1', 'a2'], 'the write committed, the thrown one rolled back');
  t.deepEqual(
    events.map((e) => [e.reason, e.write, e.outcome]),
    [
      ['monthly invoicing', false, 'commit'],
      ['cleanup', false, 'rollback'],
      ['cleanup', true, 'commit'],
      ['half-done', true, 'rollback'],
    ],
  );
});
