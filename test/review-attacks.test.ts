/**
 * An adversarial review of the day's changes: the purge's lock timeout on a caller's transaction,
 * the audit tail's upgrade and cursor, onboarding's lock database.
 */
import test from 'ava';
import diagnostics from 'node:diagnostics_channel';
import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { CHANNELS, OnboardingError, withSystemContext, withTenantTransaction, PurgeIncompleteError, purgeTenant, TenantAdminService, type AuditEntry, type TenantOperationEvent } from '../src/index.js';
import { createTestDatabase, ORDERS_SCHEMA, serverUrl, withUrl } from './helpers/db.js';
import { until } from './helpers/until.js';
import { serverFindings } from '../src/posture/server.js';

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

/** Follows the tail from `cursor` until `done` holds for what it has seen, with a deadline. */
async function follow(admin: TenantAdminService, cursor: string | undefined, done: (seen: readonly AuditEntry[]) => boolean) {
  const seen: AuditEntry[] = [];
  await until(async () => {
    const tail = await admin.tailAudit({ ...(cursor ? { after: cursor } : {}), limit: 1000 });
    cursor = tail.next;
    seen.push(...tail.entries);
    return done(seen) && tail.entries.length === 0;
  }, 30_000, 'the tail to catch up');
  return { seen, cursor: cursor! };
}

test('the upgrade of an audit log that has rows adds the commit-order column without rewriting the table, and the tail serves the old rows first, in id order', async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  t.teardown(() => db.drop());
  // The audit log as 00003 left it (before 00005), with rows in it.
  await db.superQuery('ALTER TABLE linkbay.audit_log DROP COLUMN tx; DROP TRIGGER IF EXISTS audit_log_commit_order ON linkbay.audit_log');
  const admin = new TenantAdminService(db.adminPool, { tenancy: db.config });
  for (const n of [1, 2, 3]) await admin.createTenant({ slug: `old-${n}`, name: `Old ${n}` });
  const filenode = async () => (await db.superQuery(`SELECT pg_catalog.pg_relation_filenode('linkbay.audit_log') AS f`)).rows[0].f;
  const before = await filenode();
  await db.superQuery(await readFile(new URL('../sql/00005-audit-commit-order.sql', import.meta.url), 'utf8'));
  // pg_current_xact_id() is STABLE: evaluated once, kept as the column's missing value. A volatile
  // default would rewrite every row under an ACCESS EXCLUSIVE lock: on a big audit log every admin
  // action (each writes a row) and every read of the log would wait for the whole copy.
  t.is(await filenode(), before, 'the table is not rewritten');
  const fresh = await admin.createTenant({ slug: 'new-1', name: 'New 1' });
  const { seen } = await follow(admin, undefined, (s) => s.some((e) => e.tenantId === fresh.id));
  const ids = seen.map((e) => Number(e.id));
  t.deepEqual(ids, [...ids].sort((a, b) => a - b), 'the rows from before the upgrade, then the new one, in id order');
  t.is(seen.length, 4);
});

test("a row the admin role inserts with a transaction id of its own choosing is not hidden behind a consumer's cursor", async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  t.teardown(() => db.drop());
  const admin = new TenantAdminService(db.adminPool, { tenancy: db.config });
  const first = await admin.createTenant({ slug: 'first', name: 'First' });
  const { cursor } = await follow(admin, undefined, (s) => s.some((e) => e.tenantId === first.id));
  // The admin role may INSERT (it writes every audit row): a row dated before the consumer's cursor
  // would never be served to it, while the list shows it to people.
  await db.adminPool.query(`INSERT INTO linkbay.audit_log (actor, action, tx) VALUES ('intruder', 'update', '3')`).catch(() => undefined);
  const marker = await admin.createTenant({ slug: 'marker', name: 'Marker' });
  const { seen } = await follow(admin, cursor, (s) => s.some((e) => e.tenantId === marker.id));
  const listed = (await admin.listAudit({ actor: 'intruder' })).entries.length;
  t.is(seen.filter((e) => e.actor === 'intruder').length, listed, 'every row the list shows, the tail serves');
});

// Serial: it takes CONNECT on `postgres` from PUBLIC for a moment (this run's server only).
test.serial("an onboarding into an existing database whose migration role may not connect to the default lock database (postgres) fails naming `lockDatabase`, leaving nothing", async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  const root = new pg.Client({ connectionString: serverUrl() });
  await root.connect();
  const role = `${db.config.roles.owner}_mig`;
  const database = `${db.name}_tenant`;
  await root.query(`CREATE ROLE ${role} LOGIN PASSWORD 'lbmt-test'`);
  await root.query(`CREATE DATABASE ${database} OWNER ${role}`);
  await root.query('REVOKE CONNECT ON DATABASE postgres FROM PUBLIC');
  t.teardown(async () => {
    await root.query('GRANT CONNECT ON DATABASE postgres TO PUBLIC');
    await root.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await root.query(`DROP ROLE IF EXISTS ${role}`);
    await root.end();
    await db.drop();
  });
  const migrationUrl = (url: string) => withUrl(serverUrl(), { user: role, password: 'lbmt-test', database: decodeURIComponent(new URL(url).pathname.slice(1)) });
  const admin = new TenantAdminService(db.adminPool, { tenancy: db.config, onboarding: { migrations: { files: [{ name: '00001-notes.sql', sql: 'CREATE TABLE notes (id int)' }] }, migrationUrl } });
  const error = await t.throwsAsync(admin.createTenant({ slug: 'locked-out', name: 'Locked Out', databaseUrl: withUrl(db.appUrl, { database }) }), { instanceOf: OnboardingError });
  t.regex(error!.message, /lockDatabase/, `the message says what to set: ${error!.message}`);
  t.deepEqual((await db.superQuery(`SELECT status FROM linkbay.tenants WHERE slug = 'locked-out'`)).rows, [], 'the registry row is removed');
  const tenantDb = new pg.Client({ connectionString: withUrl(serverUrl(), { database }) });
  await tenantDb.connect();
  t.teardown(() => tenantDb.end());
  t.is((await tenantDb.query(`SELECT to_regclass('notes') AS t`)).rows[0].t, null, 'nothing migrated');
  // What the message says to do works: a lock database the role may connect to.
  await root.query(`CREATE DATABASE ${database}_lock`);
  t.teardown(() => root.query(`DROP DATABASE IF EXISTS ${database}_lock WITH (FORCE)`).then(() => undefined));
  const fixed = new TenantAdminService(db.adminPool, { tenancy: db.config, onboarding: { migrations: { files: [{ name: '00001-notes.sql', sql: 'CREATE TABLE notes (id int)' }] }, migrationUrl, lockDatabase: `${database}_lock` } });
  t.is((await fixed.createTenant({ slug: 'locked-out', name: 'Locked Out', databaseUrl: withUrl(db.appUrl, { database }) })).status, 'active');
});

test('a purge refused for its audit actor is a rejected promise, published as a refused purge (not a synchronous throw nobody counts)', async (t) => {
  const { db, gone, client } = await purgeSetup();
  t.teardown(async () => {
    await client.end();
    await db.drop();
  });
  const events: TenantOperationEvent[] = [];
  const listen = (message: unknown) => {
    const event = message as TenantOperationEvent;
    if (event.tenantId === gone.id) events.push(event);
  };
  diagnostics.subscribe(CHANNELS.tenantOperation, listen);
  t.teardown(() => diagnostics.unsubscribe(CHANNELS.tenantOperation, listen));
  const admin = new TenantAdminService(db.adminPool, { tenancy: db.config });
  let promise: Promise<unknown> | undefined;
  t.notThrows(() => {
    promise = admin.purgeTenant(gone.id, { actor: '\u202e' });
    promise.catch(() => undefined);
  }, 'a Promise-returning method rejects');
  if (promise) await t.throwsAsync(promise, { message: /actor/ });
  t.deepEqual(events.map((e) => [e.operation, e.outcome, e.code]), [['purge', 'refused', 'LBMT_TENANT_INPUT_INVALID']]);
  t.is((await db.superQuery('SELECT count(*)::int AS n FROM orders WHERE tenant_id = $1', [gone.id])).rows[0].n, 3, 'nothing purged');
});

test('a release of a major that has no fix for one of its CVEs is told to change majors, not to take a minor release that still has it', (t) => {
  // 12.10 predates the 12.15 and 12.21 fixes; CVE-2025-8713 was never fixed in 12.
  const [vulnerable] = serverFindings(120010, '12.10', new Date('2024-06-01'));
  t.is(vulnerable!.code, 'LBMT_SERVER_VULNERABLE');
  t.regex(vulnerable!.message, /CVE-2025-8713/);
  t.notRegex(vulnerable!.fix, /12\.21/, `12.21 still has CVE-2025-8713: ${vulnerable!.fix}`);
  t.regex(vulnerable!.fix, /supported major/);
  // Where every missing fix has a minor release, the minor is named.
  t.regex(serverFindings(160004, '16.4')[0]!.fix, /at least 16\.10/);
});

test('a lockTimeoutMs PostgreSQL cannot take (above 2^31 - 1 ms) is refused as the option it is, not sent to fail every purge as a bad value of the request (22023, a 422)', async (t) => {
  const { db, gone, client } = await purgeSetup();
  t.teardown(async () => {
    await client.end();
    await db.drop();
  });
  await t.throwsAsync(purgeTenant(db.adminPool, gone.id, { tenancy: db.config, lockTimeoutMs: 3_000_000_000 }), { instanceOf: TypeError, message: /lockTimeoutMs/ });
  t.true((await purgeTenant(db.adminPool, gone.id, { tenancy: db.config, lockTimeoutMs: 2_147_483_647 })).complete, 'the largest one PostgreSQL takes');
});

test('timeouts PostgreSQL cannot take (above 2^31 - 1 ms) are refused as options before anything is sent, not a 22023 of every transaction (answered 422, blaming the request)', async (t) => {
  const { db, gone, client } = await purgeSetup();
  t.teardown(async () => {
    await client.end();
    await db.drop();
  });
  const tooLong = 3_000_000_000;
  for (const limits of [{ lockTimeoutMs: tooLong }, { statementTimeoutMs: tooLong }, { idleInTransactionTimeoutMs: tooLong }]) {
    await t.throwsAsync(withTenantTransaction(db.appPool, gone.id, async () => undefined, { tenancy: db.config, limits }), { instanceOf: TypeError }, JSON.stringify(limits));
  }
  await t.throwsAsync(withTenantTransaction(db.appPool, gone.id, async () => undefined, { tenancy: db.config, statementTimeoutMs: tooLong }), { instanceOf: TypeError });
  await t.throwsAsync(withSystemContext(db.adminPool, { reason: 'review', statementTimeoutMs: tooLong }, async () => undefined), { instanceOf: TypeError });
  await withTenantTransaction(db.appPool, gone.id, async () => undefined, { tenancy: db.config, limits: { lockTimeoutMs: 2_147_483_647 } });
  t.pass();
});

// Design gap, not fixed: `tx` is the writing server's transaction id, kept as data. A log carried to
// another server (pg_dump and restore: the data is loaded before the triggers exist; a logical
// replication upgrade: the apply worker fires no trigger) keeps the old server's ids, which the new
// server's counter may be far below: those rows are not served until its counter passes them, and a
// consumer whose cursor is among them misses every row written meanwhile (their tx is below it).
test.failing('rows carried over from a server whose transaction ids were ahead (restore, logical replication) are served, and so are the rows written after them', async (t) => {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  t.teardown(() => db.drop());
  const admin = new TenantAdminService(db.adminPool, { tenancy: db.config });
  // As a restore or a subscription writes them: no trigger, the old server's tx.
  await db.superQuery(`SET session_replication_role = replica; INSERT INTO linkbay.audit_log (actor, action, tx) VALUES ('old-server', 'update', (pg_catalog.pg_current_xact_id()::text::bigint + 1000000)::text::xid8); RESET session_replication_role`);
  const fresh = await admin.createTenant({ slug: 'after-restore', name: 'After Restore' });
  const seen: AuditEntry[] = [];
  let cursor: string | undefined;
  await until(async () => {
    const tail = await admin.tailAudit({ ...(cursor ? { after: cursor } : {}), limit: 1000 });
    cursor = tail.next;
    seen.push(...tail.entries);
    return seen.some((e) => e.actor === 'old-server') && seen.some((e) => e.tenantId === fresh.id);
  }, 3_000, 'the carried-over row and the new one').catch(() => undefined);
  t.true(seen.some((e) => e.actor === 'old-server'), 'the carried-over row is served');
  // A consumer that had followed the old server up to that row.
  const old = await db.superQuery(`SELECT tx::text || '.' || id::text AS cursor FROM linkbay.audit_log WHERE actor = 'old-server'`);
  const after = await until(async () => {
    const tail = await admin.tailAudit({ after: old.rows[0].cursor, limit: 1000 });
    return tail.entries.some((e) => e.tenantId === fresh.id) && tail;
  }, 3_000, 'the new row after the old cursor').catch(() => undefined);
  t.truthy(after, "the row written on the new server is served to the old server's consumer");
});
