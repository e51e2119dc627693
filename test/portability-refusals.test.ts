import anyTest, { type TestFn } from 'ava';
import { createHash } from 'node:crypto';
import { TenantIsolationError } from '../src/index.js';
import { ExportFormatError, ImportTooLargeError } from '../src/portability/index.js';
import { chunked, portabilityFixture, readAll, seedTenant, targetCounts, type PortabilityFixture } from './helpers/portability.js';
import type { Tenant } from '../src/index.js';

interface Context extends PortabilityFixture {
  tenant: Tenant;
  other: Tenant;
  text: string;
  otherText: string;
}
const test = anyTest as TestFn<Context>;

test.before(async (t) => {
  const f = await portabilityFixture();
  const tenant = await seedTenant(f, 12);
  const other = await seedTenant(f, 3);
  const text = await readAll(await f.portability.exportTenant(tenant.id));
  const otherText = await readAll(await f.portability.exportTenant(other.id));
  t.context = { ...f, tenant, other, text, otherText };
});
test.after.always((t) => t.context.close?.());

/** The lines of the export; `rebuild` recomputes the trailer so that only the check under test can refuse. */
function lines(text: string): string[] {
  return text.split('\n').slice(0, -1);
}
function withTrailerRecomputed(rows: string[]): string {
  const header = JSON.parse(rows[0]!) as { tables: Array<{ name: string }> };
  const body = rows.slice(1, -1);
  const tables = header.tables.map((table, index) => {
    const hash = createHash('sha256');
    let count = 0;
    for (const line of body) {
      const [t, row] = JSON.parse(line) as [number, string];
      if (t !== index) continue;
      hash.update(row + '\n');
      count += 1;
    }
    return { name: table.name, rows: count, sha256: hash.digest('hex') };
  });
  return [rows[0], ...body, JSON.stringify({ end: true, tables })].join('\n') + '\n';
}

/** Imports `text` as `tenant` and checks that it is refused with `expected` and that the target holds nothing. */
async function refused(t: import('ava').ExecutionContext<Context>, text: string, expected: { instanceOf?: any; code?: string; message?: RegExp }, tenantId = t.context.tenant.id) {
  const pool = t.context.target.pool(t.context.target.ownerUrl, { max: 1 });
  const error = await t.throwsAsync(t.context.portability.importTenant(tenantId, chunked(text), pool), expected as never);
  t.deepEqual(await targetCounts(t.context.target), [0, 0], 'nothing written');
  return error;
}

test.serial('the unchanged export is accepted (so the refusals below are the edits\u2019 doing)', async (t) => {
  const pool = t.context.target.pool(t.context.target.ownerUrl, { max: 1 });
  const result = await t.context.portability.importTenant(t.context.tenant.id, chunked(t.context.text), pool, { dryRun: true });
  t.deepEqual(result.counts, { 'public.accounts': 12, 'public.memberships': 24 });
  // The same file with its trailer recomputed is byte-identical: the helper changes nothing by itself.
  t.is(withTrailerRecomputed(lines(t.context.text)), t.context.text);
});

test.serial('a tampered row is refused by its checksum, nothing written (the first table already inserted is rolled back)', async (t) => {
  const rows = lines(t.context.text);
  // A membership (second table) with another note: same shape, same tenant, same count.
  const at = rows.findIndex((line) => line.startsWith('[1,') && line.includes('note '));
  rows[at] = rows[at]!.replace('note ', 'NOTE ');
  const error = await refused(t, rows.join('\n') + '\n', { instanceOf: ExportFormatError });
  t.regex(error!.message, /public\.memberships: the rows do not match the trailer's checksum/);
  t.is((error as ExportFormatError).code, 'LBMT_EXPORT_INVALID');
});

test.serial('a truncated file is refused: cut at a line end, or inside a line', async (t) => {
  const rows = lines(t.context.text);
  const half = rows.slice(0, Math.floor(rows.length / 2)).join('\n') + '\n';
  t.regex((await refused(t, half, { instanceOf: ExportFormatError }))!.message, /truncated: it has no trailer/);
  const cut = t.context.text.slice(0, t.context.text.length - 10);
  await refused(t, cut, { instanceOf: ExportFormatError });
  const noTrailer = rows.slice(0, -1).join('\n') + '\n';
  t.regex((await refused(t, noTrailer, { instanceOf: ExportFormatError }))!.message, /no trailer/);
});

test.serial('a row of another tenant is refused, even with a consistent trailer', async (t) => {
  const rows = lines(t.context.text);
  const foreign = lines(t.context.otherText).find((line) => line.startsWith('[0,'))!;
  rows.splice(2, 0, foreign);
  const error = await refused(t, withTrailerRecomputed(rows), { instanceOf: TenantIsolationError });
  t.regex(error!.message, /public\.accounts: the export holds a row of another tenant/);
  t.false(error!.message.includes(t.context.other.id), 'the other tenant is not named');
  // The other tenant's whole export, imported as this tenant, is refused at the header.
  t.regex((await refused(t, t.context.otherText, { instanceOf: TenantIsolationError }))!.message, /export is of another tenant/);
});

test.serial('a wrong format version, or not an export at all, is refused at the header', async (t) => {
  const rows = lines(t.context.text);
  const header = JSON.parse(rows[0]!);
  rows[0] = JSON.stringify({ ...header, version: 2 });
  t.regex((await refused(t, rows.join('\n') + '\n', { instanceOf: ExportFormatError }))!.message, /format version 2 is not supported/);
  await refused(t, '{"hello":"world"}\n', { instanceOf: ExportFormatError, message: /not a linkbay-tenant-export file/ });
  await refused(t, '', { instanceOf: ExportFormatError, message: /empty/ });
});

test.serial('an import larger than maxBytes is refused and reads no further', async (t) => {
  const pool = t.context.target.pool(t.context.target.ownerUrl, { max: 1 });
  let read = 0;
  const source = (async function* () {
    for await (const chunk of chunked(t.context.text, 4096)) {
      read += (chunk as Buffer).length;
      yield chunk as Buffer;
    }
  })();
  const error = await t.throwsAsync(t.context.portability.importTenant(t.context.tenant.id, source, pool, { maxBytes: 8192 }), { instanceOf: ImportTooLargeError });
  t.is(error!.status, 413);
  t.true(read <= 8192 + 4096, `stopped reading (read ${read} bytes)`);
  t.deepEqual(await targetCounts(t.context.target), [0, 0]);
});

test.serial('a target pool that bypasses RLS is refused before any row: WITH CHECK is the guarantee', async (t) => {
  const error = await t.throwsAsync(t.context.portability.importTenant(t.context.tenant.id, chunked(t.context.text), t.context.target.adminPool), { code: 'LBMT_CONFIG_INVALID' });
  t.regex(error!.message, /row level security does not apply/);
  t.deepEqual(await targetCounts(t.context.target), [0, 0]);
});
