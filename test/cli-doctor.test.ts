/**
 * `linkbay-multitenant doctor` end to end: the CLI's main() against a real database, with the
 * config written to a file the way users keep it next to their migrations.
 */
import test, { type ExecutionContext } from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../src/cli.js';
import type { PostureReport } from '../src/posture/index.js';
import { createTestDatabase, ORDERS_SCHEMA, type TestDatabase } from './helpers/db.js';

async function doctor(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(['doctor', ...args], (s) => out.push(s), (s) => err.push(s));
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** A migrated database and its config file (roles and tables as the database has them). */
async function setup(t: ExecutionContext): Promise<{ db: TestDatabase; file: string }> {
  const db = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  t.teardown(() => db.drop());
  const dir = await mkdtemp(join(tmpdir(), 'lbmt-doctor-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'multitenant.config.json');
  const config = {
    setting: db.config.setting,
    tenantIdType: db.config.tenantIdType,
    roles: db.config.roles,
    tables: db.config.tables.map((table) => ({ name: `${table.schema}.${table.table}`, tenantColumn: table.tenantColumn })),
  };
  await writeFile(file, JSON.stringify(config, null, 2));
  return { db, file };
}

test('doctor exits 0 on a freshly migrated database and --json prints the report', async (t) => {
  const { db, file } = await setup(t);
  const { code, out, err } = await doctor(['--database-url', db.superUrl, '--config', file, '--json']);
  t.is(err, '');
  t.is(code, 0);
  const report = JSON.parse(out) as PostureReport;
  t.true(report.ok);
  t.is(report.runtimeRole, db.config.roles.app);
  t.false(report.findings.some((f) => f.severity === 'error'));
});

test('doctor exits 1 once row level security is no longer forced, naming the finding in JSON and in the table', async (t) => {
  const { db, file } = await setup(t);
  await db.superQuery('ALTER TABLE orders NO FORCE ROW LEVEL SECURITY');

  const json = await doctor(['--database-url', db.superUrl, '--config', file, '--json']);
  t.is(json.code, 1);
  const report = JSON.parse(json.out) as PostureReport;
  t.false(report.ok);
  t.true(report.findings.some((f) => f.code === 'LBMT_RLS_NOT_FORCED' && f.severity === 'error' && f.object === 'public.orders'));

  const table = await doctor(['--database-url', db.superUrl, '--config', file]);
  t.is(table.code, 1);
  t.regex(table.out, /^error\s+LBMT_RLS_NOT_FORCED\s+public\.orders$/m);
  t.regex(table.out, /fix: ALTER TABLE "public"\."orders" FORCE ROW LEVEL SECURITY;/);
  t.regex(table.out, /tenant isolation is BROKEN$/);
});

test('doctor --runtime-role checks that role instead of the configured app role', async (t) => {
  const { db, file } = await setup(t);
  const { code, out } = await doctor(['--database-url', db.superUrl, '--config', file, '--runtime-role', 'lbmt_no_such_role', '--json']);
  t.is(code, 1);
  const report = JSON.parse(out) as PostureReport;
  t.is(report.runtimeRole, 'lbmt_no_such_role');
  t.true(report.findings.some((f) => f.code === 'LBMT_ROLE_MISSING'));
});

test('doctor without --config is bad usage and exits 2', async (t) => {
  const { code, out, err } = await doctor(['--database-url', 'postgres://127.0.0.1:1/none', '--json']);
  t.is(code, 2);
  t.is(out, '');
  t.regex(err, /doctor needs --database-url \(or DATABASE_URL\) and --config/);
});

test('doctor with an unknown option is bad usage and exits 2', async (t) => {
  const { code, err } = await doctor(['--database-url', 'postgres://127.0.0.1:1/none', '--config', 'x.json', '--frobnicate']);
  t.is(code, 2);
  t.regex(err, /frobnicate/);
});

test('doctor with a config file that does not exist is bad usage and exits 2', async (t) => {
  const { code, err } = await doctor(['--database-url', 'postgres://127.0.0.1:1/none', '--config', join(tmpdir(), 'lbmt-no-such-config.json')]);
  t.is(code, 2);
  t.regex(err, /cannot read config/);
});

test('doctor never writes control characters from database names to the terminal, in the table or in JSON', async (t) => {
  const { db, file } = await setup(t);
  // A permissive policy named with an OSC title sequence, a CSI "erase line", C1 CSI and a bidi override.
  const hostile = '\u001b]0;pwned\u0007\u001b[2K\u009b31m\u202eevil';
  await db.superQuery(`CREATE POLICY "${hostile}" ON orders AS PERMISSIVE FOR SELECT TO ${db.config.roles.app} USING (true)`);
  const table = await doctor(['--database-url', db.superUrl, '--config', file]);
  t.regex(table.out, /LBMT_EXTRA_PERMISSIVE_POLICY/, 'the finding is reported');
  t.false(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/.test(table.out), 'no control character reaches the terminal');
  t.true(table.out.includes('\\u{1b}]0;pwned\\u{7}'), 'shown escaped');
  const json = await doctor(['--database-url', db.superUrl, '--config', file, '--json']);
  t.false(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/.test(json.out));
  const report = JSON.parse(json.out) as PostureReport;
  t.true(report.findings.some((f) => f.object.includes(hostile) || f.message.includes(hostile)), 'JSON keeps the exact name, escaped by JSON');
});

test('doctor --format junit: an error finding is a failed test case, a clean database one passing case, names escaped', async (t) => {
  const { db, file } = await setup(t);
  const clean = await doctor(['--database-url', db.superUrl, '--config', file, '--format', 'junit']);
  t.is(clean.code, 0);
  t.regex(clean.out, /^<\?xml version="1.0" encoding="UTF-8"\?>\n<testsuites [^>]*failures="0"/);
  t.false(clean.out.includes('<failure'));

  await db.superQuery(`ALTER TABLE orders NO FORCE ROW LEVEL SECURITY`);
  await db.superQuery(`CREATE POLICY "a<b>&\u001b[31m" ON orders USING (true)`);
  const broken = await doctor(['--database-url', db.superUrl, '--config', file, '--format', 'junit']);
  t.is(broken.code, 1);
  t.regex(broken.out, /<testcase classname="linkbay-multitenant doctor" name="LBMT_RLS_NOT_FORCED [^"]*">\n\s*<failure type="LBMT_RLS_NOT_FORCED"/);
  t.regex(broken.out, /failures="[1-9]\d*"/);
  t.true(broken.out.includes('a&lt;b&gt;&amp;'), 'markup in names is escaped');
  t.false(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/.test(broken.out), 'no character XML cannot carry');

  const bad = await doctor(['--database-url', db.superUrl, '--config', file, '--format', 'sarif']);
  t.is(bad.code, 2);
});

test('doctor names drift since the migrations: a policy dropped by hand fails the run, in the table, JSON and JUnit', async (t) => {
  const { db, file } = await setup(t);
  await db.superQuery('DROP POLICY lbmt_tenant_isolation ON orders');
  const table = await doctor(['--database-url', db.superUrl, '--config', file]);
  t.is(table.code, 1);
  t.regex(table.out, /^error\s+LBMT_DRIFT_POLICY_DROPPED\s+public\.orders$/m);
  t.regex(table.out, /fix: CREATE POLICY "lbmt_tenant_isolation" ON "public"\."orders" AS RESTRICTIVE FOR ALL TO PUBLIC$/m);
  const report = JSON.parse((await doctor(['--database-url', db.superUrl, '--config', file, '--json'])).out) as PostureReport;
  t.true(report.findings.some((f) => f.code === 'LBMT_DRIFT_POLICY_DROPPED' && f.severity === 'error' && /lbmt_tenant_isolation is gone/.test(f.message)));
  const junit = await doctor(['--database-url', db.superUrl, '--config', file, '--format', 'junit']);
  t.regex(junit.out, /<testcase classname="linkbay-multitenant doctor" name="LBMT_DRIFT_POLICY_DROPPED [^"]*">\n\s*<failure type="LBMT_DRIFT_POLICY_DROPPED"/);
});
