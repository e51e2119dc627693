/**
 * Live probes (doctor --probe): two synthetic tenants per table, every way of reaching the other's
 * row, as the app role; all rolled back. A generated database passes; a broken one is caught; and
 * nothing is left behind either way — a trigger counting writes (on a sequence, which a rollback
 * does not undo) proves the probes did write, the table fingerprints prove nothing stayed.
 */
import test from 'ava';
import { checkPosture } from '../src/index.js';
import { probeTenantIsolation } from '../src/testing/index.js';
import { createTestDatabase, newTenantId, type TestDatabase } from './helpers/db.js';

const SCHEMA = `
  CREATE TABLE orders (tenant_id uuid NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY, item text NOT NULL, PRIMARY KEY (tenant_id, id));
  CREATE TABLE order_lines (tenant_id uuid NOT NULL, order_id bigint NOT NULL, sku text NOT NULL, PRIMARY KEY (tenant_id, order_id, sku),
    FOREIGN KEY (tenant_id, order_id) REFERENCES orders (tenant_id, id));
  CREATE SEQUENCE writes_seen;
  CREATE FUNCTION count_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM nextval('writes_seen'); RETURN NULL; END $$;
  CREATE TRIGGER count_orders AFTER INSERT OR UPDATE OR DELETE ON orders FOR EACH ROW EXECUTE FUNCTION count_write();
  CREATE TRIGGER count_lines AFTER INSERT OR UPDATE OR DELETE ON order_lines FOR EACH ROW EXECUTE FUNCTION count_write();
  -- ALWAYS: they fire also while the probes plant rows with foreign keys off (session_replication_role = replica).
  ALTER TABLE orders ENABLE ALWAYS TRIGGER count_orders;
  ALTER TABLE order_lines ENABLE ALWAYS TRIGGER count_lines;`;

async function seeded(t: { teardown(fn: () => Promise<void>): void }): Promise<TestDatabase> {
  const db = await createTestDatabase({ schema: SCHEMA, tenancy: { tables: ['orders', 'order_lines'] } });
  t.teardown(() => db.drop());
  await db.superQuery(`GRANT USAGE ON SEQUENCE writes_seen TO ${db.config.roles.app}`);
  for (const tenant of [newTenantId(), newTenantId()]) {
    const { rows } = await db.superQuery(`INSERT INTO orders (tenant_id, item) VALUES ($1, 'real') RETURNING id`, [tenant]);
    await db.superQuery(`INSERT INTO order_lines (tenant_id, order_id, sku) VALUES ($1, $2, 'S')`, [tenant, rows[0].id]);
  }
  return db;
}

const state = async (db: TestDatabase) => ({
  orders: (await db.superQuery(`SELECT count(*)::int AS n, coalesce(sum(hashtext(o::text)), 0)::text AS f FROM orders o`)).rows[0],
  lines: (await db.superQuery(`SELECT count(*)::int AS n, coalesce(sum(hashtext(l::text)), 0)::text AS f FROM order_lines l`)).rows[0],
  writes: Number((await db.superQuery(`SELECT last_value, is_called FROM writes_seen`)).rows.map((r) => (r.is_called ? r.last_value : 0))[0]),
});

test('a generated database passes every probe, and the probes leave no row and no change behind', async (t) => {
  const db = await seeded(t);
  const before = await state(db);
  const report = await probeTenantIsolation({ pool: db.pool(db.superUrl, { max: 1 }), config: db.config, appPool: db.appPool });
  t.deepEqual(report.breaches, []);
  t.deepEqual(report.notes, []);
  t.deepEqual(report.probed, ['public.orders', 'public.order_lines']);
  const after = await state(db);
  t.deepEqual({ orders: after.orders, lines: after.lines }, { orders: before.orders, lines: before.lines }, 'no row left behind or changed');
  t.true(after.writes > before.writes, `the probes did write (${after.writes - before.writes} writes counted), then rolled back`);

  const posture = await checkPosture(db.pool(db.superUrl, { max: 1 }), db.config, { probe: true });
  t.deepEqual(posture.findings.filter((f) => f.code.startsWith('LBMT_PROBE')), []);
});

test('a permissive USING (true) policy with the isolation policy dropped is caught by every probe, and still nothing stays', async (t) => {
  const db = await seeded(t);
  await db.superQuery(`DROP POLICY lbmt_tenant_isolation ON orders`);
  const before = await state(db);
  const report = await probeTenantIsolation({ pool: db.pool(db.superUrl, { max: 1 }), config: db.config, appPool: db.appPool });
  const orders = report.breaches.filter((b) => b.startsWith('public.orders:'));
  for (const what of ["reading another tenant's row", "updating another tenant's row", "deleting another tenant's row", 'inserting a row for another tenant', 'upserting a row']) {
    t.true(orders.some((b) => b.includes(what)), `${what} in ${orders.join('\n')}`);
  }
  t.true(report.breaches.some((b) => b.includes('pooled connection with no tenant set sees')), 'the unscoped pooled connection sees rows');
  t.false(report.breaches.some((b) => b.startsWith('public.order_lines:') && !b.includes('joining')), 'order_lines itself still isolates');
  const after = await state(db);
  t.deepEqual({ orders: after.orders, lines: after.lines }, { orders: before.orders, lines: before.lines }, 'nothing stayed, though the probes got through');

  const posture = await checkPosture(db.pool(db.superUrl, { max: 1 }), db.config, { probe: true });
  t.true(posture.findings.some((f) => f.code === 'LBMT_PROBE_BREACH' && f.severity === 'error'));
  t.false(posture.ok);
});

test('probes asked for on a connection that cannot run them prove nothing: not ok, and doctor --probe fails with LBMT_PROBE_NOT_RUN', async (t) => {
  const db = await seeded(t);
  // The admin role: BYPASSRLS, not a superuser.
  const report = await probeTenantIsolation({ pool: db.adminPool, config: db.config });
  t.false(report.ran);
  t.false(report.ok, 'no breach found, but nothing was proven');
  t.deepEqual(report.probed, []);
  const posture = await checkPosture(db.adminPool, db.config, { probe: true });
  t.false(posture.ok);
  t.like(posture.findings.find((f) => f.code.startsWith('LBMT_PROBE')), { code: 'LBMT_PROBE_NOT_RUN', severity: 'error' });
  // Without --probe the same connection's catalog check is what it was.
  t.false((await checkPosture(db.adminPool, db.config)).findings.some((f) => f.code.startsWith('LBMT_PROBE')));
});
