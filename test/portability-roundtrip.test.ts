import anyTest, { type TestFn } from 'ava';
import diagnostics from 'node:diagnostics_channel';
import { FORMAT_NAME, FORMAT_VERSION, type ExportHeader, type ExportTrailer } from '../src/portability/index.js';
import { CHANNELS, TenantNotFoundError, type TenantOperationEvent } from '../src/index.js';
import { chunked, portabilityFixture, readAll, seedTenant, serverDigest, targetCounts, type PortabilityFixture } from './helpers/portability.js';

const test = anyTest as TestFn<PortabilityFixture>;
test.before(async (t) => {
  t.context = await portabilityFixture();
});
test.after.always((t) => t.context.close?.());

test.serial('export → import into a fresh database gives identical rows, by checksum, for every type', async (t) => {
  const f = t.context;
  const tenant = await seedTenant(f, 60);
  const neighbour = await seedTenant(f, 7); // other tenants' rows in the same tables stay behind
  let trailer: ExportTrailer | undefined;
  const text = await readAll(await f.portability.exportTenant(tenant.id, (x) => (trailer = x)));
  const lines = text.split('\n');
  t.is(lines.at(-1), '', 'every line ends with a newline');
  const header = JSON.parse(lines[0]!) as ExportHeader;
  t.is(header.format, FORMAT_NAME);
  t.is(header.version, FORMAT_VERSION);
  t.is(header.tenant, tenant.id);
  t.deepEqual(header.tables.map((x) => [x.name, x.key]), [['public.accounts', ['tenant_id', 'id']], ['public.memberships', ['tenant_id', 'account_id', 'team']]]);
  t.false(header.tables[0]!.columns.some((c) => c.name === 'name_length'), 'generated columns are left to the target');
  t.deepEqual(JSON.parse(lines.at(-2)!), trailer);
  t.deepEqual(trailer!.tables.map((x) => [x.name, x.rows]), [['public.accounts', 60], ['public.memberships', 120]]);
  t.false(text.includes(neighbour.id), 'nothing of the other tenant');

  const ownerPool = f.target.pool(f.target.ownerUrl, { max: 1 });
  const result = await f.portability.importTenant(tenant.id, chunked(text), ownerPool);
  t.deepEqual(result.counts, { 'public.accounts': 60, 'public.memberships': 120 });
  t.deepEqual(result.tables, trailer!.tables);
  // The server's own text of every row is the same on both sides (and the generated column recomputed).
  t.deepEqual(await serverDigest(f.target, tenant.id), await serverDigest(f.source, tenant.id));
  // And the target exports to the same bytes' checksums.
  const again = await readAll((await import('../src/portability/export.js')).exportTenantStream(f.target.appPool, tenant.id, { tenancy: f.target.config }));
  t.deepEqual(JSON.parse(again.split('\n').at(-2)!), trailer);
  // The identity sequence moved past the imported ids: the next insert does not collide.
  const { rows } = await f.target.superQuery(`INSERT INTO accounts (tenant_id, name) VALUES ($1, 'new') RETURNING id`, [tenant.id]);
  t.true(Number(rows[0].id) > 60);
});

test.serial('dryRun validates and counts, writes nothing; upsert updates rows already there', async (t) => {
  const f = t.context;
  const tenant = await seedTenant(f, 5);
  const text = await readAll(await f.portability.exportTenant(tenant.id));
  const ownerPool = f.target.pool(f.target.ownerUrl, { max: 1 });
  const before = await targetCounts(f.target);
  const dry = await f.portability.importTenant(tenant.id, chunked(text), ownerPool, { dryRun: true });
  t.deepEqual(dry.counts, { 'public.accounts': 5, 'public.memberships': 10 });
  t.true(dry.dryRun);
  t.deepEqual(await targetCounts(f.target), before);

  await f.portability.importTenant(tenant.id, chunked(text), ownerPool);
  // insert refuses a second time (the target holds the tenant), upsert brings changed rows back.
  await f.target.superQuery(`UPDATE memberships SET note = 'changed on the target' WHERE tenant_id = $1`, [tenant.id]);
  await t.throwsAsync(f.portability.importTenant(tenant.id, chunked(text), ownerPool), { code: 'LBMT_TENANT_INPUT_INVALID' });
  const upserted = await f.portability.importTenant(tenant.id, chunked(text), ownerPool, { mode: 'upsert' });
  t.deepEqual(upserted.counts, { 'public.accounts': 5, 'public.memberships': 10 });
  t.deepEqual(await serverDigest(f.target, tenant.id), await serverDigest(f.source, tenant.id));
});

test.serial('export of an unknown tenant is TenantNotFoundError before any byte', async (t) => {
  await t.throwsAsync(t.context.portability.exportTenant(crypto.randomUUID()), { instanceOf: TenantNotFoundError });
});

test.serial('an export is one operation, succeeded once its stream has ended; abandoned half-read or unknown, it did not succeed', async (t) => {
  const f = t.context;
  const tenant = await seedTenant(f, 300);
  const events: TenantOperationEvent[] = [];
  const listen = (event: unknown) => events.push(event as TenantOperationEvent);
  diagnostics.subscribe(CHANNELS.tenantOperation, listen);
  t.teardown(() => diagnostics.unsubscribe(CHANNELS.tenantOperation, listen));
  await readAll(await f.portability.exportTenant(tenant.id));
  const abandoned = await f.portability.exportTenant(tenant.id);
  abandoned.destroy();
  await new Promise((resolve) => abandoned.once('close', resolve));
  await t.throwsAsync(f.portability.exportTenant(crypto.randomUUID()));
  const text = await readAll(await f.portability.exportTenant(tenant.id));
  await t.throwsAsync(f.portability.importTenant(tenant.id, chunked(text.replace('"tenant"', '"tenant_x"')), f.target.pool(f.target.ownerUrl, { max: 1 })));
  t.deepEqual(
    events.map(({ operation, outcome, code, tenantId }) => ({ operation, outcome, code, tenantId })),
    [
      { operation: 'export', outcome: 'succeeded', code: undefined, tenantId: tenant.id },
      { operation: 'export', outcome: 'failed', code: 'AbortError', tenantId: tenant.id },
      { operation: 'export', outcome: 'refused', code: 'LBMT_TENANT_NOT_FOUND', tenantId: events[2]?.tenantId ?? null },
      { operation: 'export', outcome: 'succeeded', code: undefined, tenantId: tenant.id },
      // A file whose header names no tenant: refused, nothing imported.
      { operation: 'import', outcome: 'refused', code: 'LBMT_ISOLATION_VIOLATION', tenantId: tenant.id },
    ],
  );
});
