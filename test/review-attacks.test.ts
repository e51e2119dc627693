/**
 * An adversarial review of the day's changes: the purge's lock timeout on a caller's transaction,
 * the audit tail's upgrade and cursor, onboarding's lock database.
 */
import test from 'ava';
import pg from 'pg';
import { PurgeIncompleteError, purgeTenant, TenantAdminService } from '../src/index.js';
import { createTestDatabase } from './helpers/db.js';

const PURGE_SCHEMA = `
  CREATE TABLE orders (tenant_id uuid NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY, item text NOT NULL, PRIMARY KEY (tenant_id, id));
  CREATE TABLE forgotten_notes (tenant_id uuid NOT NULL, body text NOT NULL);
`;

async function purgeSetup() {
  const db = await createTestDatabase({ schema: PURGE_SCHEMA, tenancy: { tables: ['orders'] } });
  await db.superQuery(`GRANT SELECT, DELETE ON forgotten_notes TO ${db.config.roles.admin}`);
  const admin = new TenantAdminService(db.adminPool, { tenancy: db.config });
  const gone = await admin.createTenant({ slug: 'gone', name: 'Gone' });
  await db.superQuery(`INSERT INTO orders (tenant_id, item) SELECT $1, 'x' FROM generate_series(1, 3)`, [gone.id]);
  await db.superQuery(`INSERT INTO forgotten_notes (tenant_id, body) SELECT $1, 'n' FROM generate_series(1, 2)`, [gone.id]);
  await admin.deleteTenant(gone.id);
  const client = new pg.Client({ connectionString: db.adminUrl });
  await client.connect();
  return { db, gone, client };
}

test("a purge joining the caller's transaction (a client in BEGIN) leaves the caller's lock_timeout as it was", async (t) => {
  const { db, gone, client } = await purgeSetup();
  t.teardown(async () => {
    await client.end();
    await db.drop();
  });
  await client.query(`BEGIN; SET LOCAL lock_timeout = '5s'`);
  const report = await purgeTenant(client, gone.id, { tenancy: db.config, lockTimeoutMs: 1234 });
  t.true(report.complete);
  t.is((await client.query('SHOW lock_timeout')).rows[0].lock_timeout, '5s', "the purge's own lock timeout is not the caller's for the rest of its transaction");
  await client.query('COMMIT');
});

test("a purge that cannot finish, joining the caller's transaction, deletes nothing there either (the report says nothing was deleted)", async (t) => {
  const { db, gone, client } = await purgeSetup();
  t.teardown(async () => {
    await client.end();
    await db.drop();
  });
  await db.superQuery(`REVOKE DELETE ON forgotten_notes FROM ${db.config.roles.admin}`);
  await client.query('BEGIN');
  const error = await t.throwsAsync(purgeTenant(client, gone.id, { tenancy: db.config }), { instanceOf: PurgeIncompleteError });
  t.regex(error!.message, /nothing was deleted/);
  t.deepEqual(error!.report.tables.map((r) => [r.table, r.deleted, r.remaining]), [['public.forgotten_notes', 0, 2], ['public.orders', 0, 3]]);
  const inCaller = await client.query('SELECT count(*)::int AS n FROM orders WHERE tenant_id = $1', [gone.id]);
  t.is(inCaller.rows[0].n, 3, "the orders deleted before the failure are not left deleted in the caller's transaction");
  // A caller that goes on after the error and commits (its transaction was not aborted).
  await client.query('COMMIT');
  t.is((await db.superQuery('SELECT count(*)::int AS n FROM orders WHERE tenant_id = $1', [gone.id])).rows[0].n, 3);
});
