/** The CLI's `export`, `import` and `move` commands (src/cli.ts dispatches to them). */
import { createReadStream, createWriteStream } from 'node:fs';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import pg from 'pg';
import type { TenancyConfig } from './config.js';
import { TenantAdminService } from './admin.js';
import { TenantDBPool } from './db-pool.js';
import { PgTenantService } from './tenants.js';
import { canonicalTenantId } from './tenant-id.js';
import { importTenantStream } from './portability/import.js';
import { TenantMoveJobs } from './portability/jobs.js';
import { TenantPortability } from './portability/service.js';
import { formatBytes, Progress } from './progress.js';

export class CliUsageError extends Error {}

export interface CliIo {
  out(text: string): void;
  /** Progress and step lines (stderr). */
  progress: Progress;
  /** Where `export` writes when no --out is given (stdout). */
  stdout: NodeJS.WritableStream;
  stdin: NodeJS.ReadableStream;
  loadConfig(path: string): Promise<TenancyConfig>;
}

/** Counts the bytes going through, for the progress line. */
function counter(report: (bytes: number) => void): Transform {
  let bytes = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      bytes += chunk.length;
      report(bytes);
      done(null, chunk);
    },
    flush(done) {
      report(-bytes - 1);
      done();
    },
  });
}

function pools(url: string, max = 2): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max });
  pool.on('error', () => undefined);
  return pool;
}

export async function exportCommand(args: string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({ args, options: { 'database-url': { type: 'string' }, config: { type: 'string' }, tenant: { type: 'string' }, out: { type: 'string' } }, strict: true });
  const databaseUrl = values['database-url'] ?? process.env.DATABASE_URL;
  if (!databaseUrl || !values.config || !values.tenant) throw new CliUsageError('export needs --database-url (or DATABASE_URL), --config and --tenant');
  const tenancy = await io.loadConfig(values.config);
  const pool = pools(databaseUrl);
  const tenantPools = new TenantDBPool({ tenantService: new PgTenantService(pool, { tenancy }), sharedPool: pool, tenancy });
  try {
    // The export runs as the app role (under RLS), which may not write the audit log: not audited.
    const portability = new TenantPortability({ pools: tenantPools, admin: new TenantAdminService(pool, { tenancy }), tenancy, audit: false });
    let rows = '';
    const stream = await portability.exportTenant(values.tenant, (trailer) => (rows = trailer.tables.map((t) => `${t.name} ${t.rows}`).join(', ')));
    const sink = values.out ? createWriteStream(values.out) : io.stdout;
    await pipeline(stream, counter((bytes) => io.progress.update(`export: ${formatBytes(bytes < 0 ? -bytes - 1 : bytes)}`, bytes < 0)), sink);
    io.progress.line(`exported ${rows}`);
    return 0;
  } finally {
    await tenantPools.closeAll();
    await pool.end();
  }
}

export async function importCommand(args: string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { 'database-url': { type: 'string' }, config: { type: 'string' }, tenant: { type: 'string' }, in: { type: 'string' }, mode: { type: 'string' }, 'dry-run': { type: 'boolean' } },
    strict: true,
  });
  const databaseUrl = values['database-url'] ?? process.env.DATABASE_URL;
  if (!databaseUrl || !values.config || !values.tenant) throw new CliUsageError('import needs --database-url (or DATABASE_URL: the target as the owner role), --config and --tenant');
  if (values.mode !== undefined && values.mode !== 'insert' && values.mode !== 'upsert') throw new CliUsageError('--mode must be insert or upsert');
  const tenancy = await io.loadConfig(values.config);
  const tenantId = canonicalTenantId(values.tenant, tenancy.tenantIdType);
  const pool = pools(databaseUrl, 1);
  try {
    const source = values.in ? createReadStream(values.in) : io.stdin;
    const counted = source.pipe(counter((bytes) => io.progress.update(`import: ${formatBytes(bytes < 0 ? -bytes - 1 : bytes)} read`, bytes < 0)));
    const result = await importTenantStream(pool, tenantId, counted, { tenancy, mode: (values.mode ?? 'insert') as 'insert' | 'upsert', dryRun: values['dry-run'] === true });
    const counts = Object.entries(result.counts).map(([table, n]) => `${table} ${n}`).join(', ');
    io.progress.line(`${result.dryRun ? 'dry run, would import' : 'imported'} ${counts}`);
    return 0;
  } finally {
    await pool.end();
  }
}

export async function moveCommand(args: string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      'database-url': { type: 'string' },
      'app-url': { type: 'string' },
      config: { type: 'string' },
      tenant: { type: 'string' },
      'target-url': { type: 'string' },
      'target-owner-url': { type: 'string' },
      'target-name': { type: 'string' },
      copy: { type: 'boolean' },
      resume: { type: 'boolean' },
      'settle-ms': { type: 'string' },
    },
    strict: true,
  });
  const adminUrl = values['database-url'] ?? process.env.DATABASE_URL;
  if (!adminUrl || !values['app-url'] || !values.config || !values['target-owner-url'] || !values['target-url'] || (!values.tenant && !values.resume)) {
    throw new CliUsageError('move needs --database-url (the shared database as the admin role), --app-url, --config, --target-url (app role, or "shared"), --target-owner-url and --tenant (or --resume)');
  }
  const settleMs = values['settle-ms'] === undefined ? undefined : Number(values['settle-ms']);
  const tenancy = await io.loadConfig(values.config);
  const adminPool = pools(adminUrl);
  const appPool = pools(values['app-url']);
  const ownerPool = pools(values['target-owner-url']);
  const tenantPools = new TenantDBPool({ tenantService: new PgTenantService(appPool, { tenancy }), sharedPool: appPool, tenancy });
  try {
    const portability = new TenantPortability({ pools: tenantPools, admin: new TenantAdminService(adminPool, { tenancy }), tenancy });
    const databaseUrl = values['target-url'] === 'shared' ? null : values['target-url'];
    const jobs = new TenantMoveJobs({
      portability,
      adminPool,
      targets: { [values['target-name'] ?? 'cli']: { databaseUrl, targetPool: ownerPool } },
      ...(settleMs === undefined ? {} : { settleMs }),
      afterStep: (job, step) => io.progress.line(`move ${job.id}: ${step}${job.tables && step === 'copied' ? ` (${job.tables.map((t) => `${t.name} ${t.rows}`).join(', ')})` : ''}`),
    });
    const done = values.resume ? await jobs.resume() : [await jobs.run((await jobs.start(values.tenant!, { target: values['target-name'] ?? 'cli', copyMode: values.copy === true })).id)];
    for (const job of done) io.out(`${job.id}: ${job.state} at ${job.step}${job.error ? ` (${job.error.code}: ${job.error.message})` : ''}`);
    return done.every((job) => job.state === 'succeeded') ? 0 : 1;
  } finally {
    await tenantPools.closeAll();
    await Promise.all([adminPool.end(), appPool.end(), ownerPool.end()]);
  }
}
