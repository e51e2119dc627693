/**
 * `npm start` (examples/enterprise.ts) refuses to serve through a database connection that would
 * not isolate tenants: an APP_DATABASE_URL of a superuser or of a BYPASSRLS role.
 */
import anyTest, { type TestFn } from 'ava';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { checkPosture, defineTenancy } from '../src/index.js';
import { main } from '../src/cli.js';
import { probeTenantIsolation } from '../src/testing/index.js';
import { createTestDatabase, withUrl, type TestDatabase } from './helpers/db.js';

const test = anyTest as TestFn<{ db: TestDatabase }>;
const PASSWORD = 'example-startup-pw';

test.before(async (t) => {
  // The example migrates its own schema (examples/migrations, roles app_owner/app_user/app_admin) into it.
  t.context = { db: await createTestDatabase({ migrate: false }) };
});
test.after.always(async (t) => {
  await t.context.db?.drop();
});

/** Runs the example until it listens (then stops it) or exits on its own, within a deadline. */
function startExample(env: Record<string, string>): Promise<{ listened: boolean; code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'examples/enterprise.ts'], {
      env: { ...process.env, PORT: '0', ADMIN_TOKEN: 'example-startup-admin-token', APP_DB_PASSWORD: PASSWORD, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    let listened = false;
    const deadline = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the example neither listened nor exited within 60 s:\n${output}`));
    }, 60_000);
    const read = (chunk: Buffer) => {
      output += chunk.toString();
      if (!listened && output.includes('listening on')) {
        listened = true;
        child.kill('SIGTERM');
      }
    };
    child.stdout.on('data', read);
    child.stderr.on('data', read);
    child.on('exit', (code) => {
      clearTimeout(deadline);
      resolve({ listened, code, output });
    });
  });
}

test.serial('it starts on a safe database (the control: what the refusals below differ by)', async (t) => {
  const run = await startExample({ DATABASE_URL: t.context.db.superUrl });
  t.true(run.listened, run.output);
  // Its migrations recorded the manifest: doctor finds no drift on the example schema.
  const tenancy = defineTenancy(JSON.parse(await readFile(new URL('../examples/multitenant.config.json', import.meta.url), 'utf8')));
  const pool = new pg.Pool({ connectionString: t.context.db.superUrl, max: 1 });
  try {
    const { rows } = await pool.query('SELECT table_name FROM linkbay.policy_manifest');
    t.deepEqual(rows, [{ table_name: 'public.orders' }]);
    const report = await checkPosture(pool, tenancy);
    t.deepEqual(report.findings.filter((f) => f.code.startsWith('LBMT_DRIFT_')), []);
  } finally {
    await pool.end();
  }
  // The ready CI step of the README on the example schema: doctor with live probes and policy
  // performance, JUnit out, exit 0 (issue 14: the probe runs in CI against the example schema).
  // The probes copy a real row of each table (rolled back afterwards): one tenant, one order.
  const seed = new pg.Pool({ connectionString: t.context.db.superUrl, max: 1 });
  try {
    const { rows } = await seed.query(`INSERT INTO linkbay.tenants (slug, name) VALUES ('probe-seed', 'Probe seed') RETURNING id`);
    await seed.query(`INSERT INTO orders (tenant_id, item, quantity) VALUES ($1, 'seed', 1)`, [rows[0].id]);
  } finally {
    await seed.end();
  }
  const out: string[] = [];
  const err: string[] = [];
  const config = new URL('../examples/multitenant.config.json', import.meta.url).pathname;
  const code = await main(['doctor', '--database-url', t.context.db.superUrl, '--config', config, '--probe', '--perf', '--format', 'junit'], (line) => out.push(line), (line) => err.push(line));
  const xml = out.join('\n');
  t.is(code, 0, `${xml}\n${err.join('\n')}`);
  t.regex(xml, /<testsuites[^>]*failures="0"/);
  t.notRegex(xml, /LBMT_PROBE_SKIPPED|LBMT_PROBE_BREACH/, 'the live probes ran on orders (a table not probed is reported as skipped) and found no breach');
  const probePool = new pg.Pool({ connectionString: t.context.db.superUrl, max: 2 });
  try {
    const probes = await probeTenantIsolation({ pool: probePool, config: tenancy });
    t.true(probes.ok, JSON.stringify(probes.breaches));
    t.deepEqual(probes.probed, ['public.orders'], probes.notes.join('; '));
  } finally {
    await probePool.end();
  }
});

test.serial('it refuses to start when the app connects as a superuser', async (t) => {
  const { db } = t.context;
  const run = await startExample({ DATABASE_URL: db.superUrl, APP_DATABASE_URL: db.superUrl });
  t.false(run.listened, run.output);
  t.not(run.code, 0);
  t.regex(run.output, /LBMT_ROLE_SUPERUSER/);
});

test.serial('it refuses to start when the app logs in as a superuser and sets role to the app role', async (t) => {
  const { db } = t.context;
  const disguised = new URL(db.superUrl);
  disguised.searchParams.set('options', '-c role=app_user');
  const run = await startExample({ DATABASE_URL: db.superUrl, APP_DATABASE_URL: disguised.toString() });
  t.false(run.listened, run.output);
  t.not(run.code, 0);
  t.regex(run.output, /LBMT_ROLE_SUPERUSER/);
});

test.serial('it refuses to start when the app connects as a BYPASSRLS role', async (t) => {
  const { db } = t.context;
  const run = await startExample({ DATABASE_URL: db.superUrl, APP_DATABASE_URL: withUrl(db.superUrl, { user: 'app_admin', password: PASSWORD }) });
  t.false(run.listened, run.output);
  t.not(run.code, 0);
  t.regex(run.output, /LBMT_ROLE_BYPASSRLS/);
  t.false(run.output.includes(PASSWORD), 'the password is not printed');
});
