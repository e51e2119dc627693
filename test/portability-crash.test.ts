import test from 'ava';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { TenantMoveJobs } from '../src/portability/index.js';
import { portabilityFixture, seedTenant, serverDigest } from './helpers/portability.js';

const CHILD = fileURLToPath(new URL('./fixtures/move-and-die.ts', import.meta.url));

test('an instance killed with SIGKILL mid-move leaves its job to another instance, which finishes it', async (t) => {
  const f = await portabilityFixture();
  t.teardown(() => f.close());
  const tenant = await seedTenant(f, 9);
  const original = await serverDigest(f.source, tenant.id);
  const jobs = new TenantMoveJobs({
    portability: f.portability,
    adminPool: f.source.adminPool,
    targets: { eu: { databaseUrl: f.target.appUrl, targetPool: f.target.pool(f.target.ownerUrl, { max: 1 }) } },
    settleMs: 0,
  });
  const job = await jobs.start(tenant.id, { target: 'eu' });
  const args = JSON.stringify({
    tenancy: { tables: ['accounts', 'memberships'], roles: f.source.config.roles },
    adminUrl: f.source.adminUrl,
    appUrl: f.source.appUrl,
    targetAppUrl: f.target.appUrl,
    targetOwnerUrl: f.target.ownerUrl,
    jobId: job.id,
    step: 'copied',
  });
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, s) => resolve(s)));
  t.is(signal, 'SIGKILL', stderr);
  t.like(await jobs.get(job.id), { state: 'running', step: 'copied' });
  t.is((await f.source.superQuery(`SELECT database_url FROM linkbay.tenants WHERE id = $1`, [tenant.id])).rows[0].database_url, null, 'the old placement serves');
  // The dead process's session (and its lock) goes away once the server notices; resume until it has.
  const deadline = Date.now() + 30_000;
  let resumed = await jobs.run(job.id);
  while (resumed.state === 'running' && Date.now() < deadline) resumed = await jobs.run(job.id);
  t.like(resumed, { state: 'succeeded', step: 'cleaned' });
  t.deepEqual(await serverDigest(f.target, tenant.id), original);
  t.is((await serverDigest(f.source, tenant.id)).account_rows, 0);
});
