import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import { qualifiedName, quoteIdent, type TenancyConfig } from '../config.js';
import { TenancyConfigError, TenantInputError, TenantIsolationError } from '../errors.js';
import type { TenantClient, TenantPool } from '../pool.js';
import { RowDigest, type TableDigest } from './checksum.js';
import { ExportFormatError } from './errors.js';
import { copyField, copyFieldCount } from './format.js';
import { checkTrailer, readHeader, type PlannedTable } from './header.js';
import { LineReader } from './lines.js';
import { withCopySession } from './session.js';
import { tableShape, type TableShape } from './schema.js';

const CHUNK_BYTES = 64 * 1024;
/** Row text staged per batch (COPY into the temporary table, then INSERT ... SELECT): under the default temp_buffers (8 MB). */
const STAGE_BYTES = 4 * 1024 * 1024;

export interface ImportStreamOptions {
  readonly tenancy: TenancyConfig;
  /** `insert` (default): the target must hold no row of the tenant. `upsert`: rows with an existing primary key are updated. */
  readonly mode?: 'insert' | 'upsert';
  /** Validate everything (format, checksums, the target's constraints and WITH CHECK) and roll back. */
  readonly dryRun?: boolean;
  /** Refuse a source larger than this many bytes (ImportTooLargeError). Default: no limit. */
  readonly maxBytes?: number;
}

export interface ImportStreamResult {
  /** Rows per table (written, or that would be with `dryRun`). */
  readonly counts: Readonly<Record<string, number>>;
  /** The tables' digests, equal to the export's trailer. */
  readonly tables: readonly TableDigest[];
  readonly dryRun: boolean;
}

/**
 * Imports a tenant export (src/portability/format.ts) from a stream, in ONE transaction as the
 * tenant on `pool` (a role under RLS on the target that owns the tables' sequences: the owner role).
 * Each table's rows go with `COPY ... FROM STDIN` into a temporary table, then with
 * `INSERT ... SELECT` (in batches of a few MB) (`ON CONFLICT (key) DO UPDATE` for upsert) into the table, where RLS WITH
 * CHECK applies (COPY FROM into a table under RLS is refused by PostgreSQL). Before COMMIT: the
 * header (format, version, tenant, tables and columns), every row's tenant, each table's count and
 * checksum against the trailer; a truncated file has no trailer. Any refusal rolls back: nothing
 * is written. `tenantId` must be canonical.
 */
export async function importTenantStream(
  pool: TenantPool,
  tenantId: string,
  source: AsyncIterable<Buffer | string>,
  options: ImportStreamOptions,
): Promise<ImportStreamResult> {
  const mode = options.mode ?? 'insert';
  if (mode !== 'insert' && mode !== 'upsert') throw new TypeError("`mode` must be 'insert' or 'upsert'");
  const lines = new LineReader(source, options.maxBytes);
  const { tables } = readHeader(await lines.next(), tenantId, options.tenancy);
  const session = { readOnly: false, isolation: 'read committed' as const, tenancy: options.tenancy };
  return withCopySession(pool, tenantId, session, async (client) => {
    const digests: TableDigest[] = [];
    const shapes: TableShape[] = [];
    for (const table of tables) shapes.push(await checkTarget(client, table, tenantId, mode));
    for (const [index, table] of tables.entries()) {
      digests.push(await importTable(client, lines, index, table, shapes[index]!, tenantId, mode));
    }
    const last = await lines.next();
    if (last === undefined) throw new ExportFormatError('the export is truncated: it has no trailer');
    if (last.startsWith('[')) throw new ExportFormatError('the export has rows out of table order');
    checkTrailer(last, digests);
    if (!lines.endedWithNewline) throw new ExportFormatError('the export is truncated: its last line is incomplete');
    for (let extra = await lines.next(); extra !== undefined; extra = await lines.next()) {
      if (extra !== '') throw new ExportFormatError('the export has lines after its trailer');
    }
    if (!options.dryRun) for (const shape of shapes) await raiseSequences(client, shape, tables[shapes.indexOf(shape)]!);
    const counts = Object.fromEntries(digests.map((d) => [d.name, d.rows]));
    return { value: { counts, tables: digests, dryRun: options.dryRun === true }, commit: !options.dryRun };
  });
}

/** The target's table: under RLS for this role, with every exported column, and (insert) no rows of the tenant yet. */
async function checkTarget(client: TenantClient, table: PlannedTable, tenantId: string, mode: 'insert' | 'upsert'): Promise<TableShape> {
  const name = qualifiedName(table.config);
  const { rows } = (await client.query('SELECT pg_catalog.row_security_active($1::regclass) AS on', [name])) as { rows: Array<{ on: boolean }> };
  // WITH CHECK is the guarantee: a pool whose role bypasses RLS on the target is refused.
  if (!rows[0]?.on) throw new TenancyConfigError(`row level security does not apply to the target pool's role on ${table.exported.name}; use the owner role`);
  const shape = await tableShape(client, table.config);
  for (const column of table.exported.columns) {
    if (!shape.columns.some((c) => c.name === column.name)) throw new ExportFormatError(`${table.exported.name} on the target has no stored column \`${column.name}\``);
  }
  if (mode === 'upsert' && shape.key.length === 0) throw new TenantInputError(`${table.exported.name} has no primary key: upsert needs one`);
  if (mode === 'insert') {
    const existing = (await client.query(`SELECT 1 FROM ${name} WHERE ${quoteIdent(table.config.tenantColumn)} = $1 LIMIT 1`, [tenantId])) as { rows: unknown[] };
    if (existing.rows.length) throw new TenantInputError(`the target already holds rows of this tenant in ${table.exported.name}`);
  }
  return shape;
}

async function importTable(
  client: TenantClient,
  lines: LineReader,
  index: number,
  table: PlannedTable,
  shape: TableShape,
  tenantId: string,
  mode: 'insert' | 'upsert',
): Promise<TableDigest> {
  const name = table.exported.name;
  const stage = `lbmt_import_${index}`;
  const columns = table.exported.columns.map((c) => quoteIdent(c.name)).join(', ');
  await client.query(`CREATE TEMP TABLE ${stage} ON COMMIT DROP AS SELECT ${columns} FROM ${qualifiedName(table.config)} WITH NO DATA`);
  const digest = new RowDigest(name);
  const width = table.exported.columns.length;
  const prefix = `[${index},`;
  const overriding = table.exported.columns.some((c) => shape.identityAlways.includes(c.name)) ? ' OVERRIDING SYSTEM VALUE' : '';
  let conflict = '';
  if (mode === 'upsert') {
    const updated = table.exported.columns.filter((c) => !shape.key.includes(c.name));
    conflict = ` ON CONFLICT (${shape.key.map(quoteIdent).join(', ')}) ` +
      (updated.length ? `DO UPDATE SET ${updated.map((c) => `${quoteIdent(c.name)} = EXCLUDED.${quoteIdent(c.name)}`).join(', ')}` : 'DO NOTHING');
  }
  let ended = false;
  let batchRows = 0;
  // One batch of the table's rows, up to STAGE_BYTES: the stage stays within temp_buffers (no spill).
  async function* batch(): AsyncGenerator<string> {
    let pending = '';
    let pendingRows = 0;
    let bytes = 0;
    // The rows as sent to COPY are what the checksum covers: hashed a chunk at a time.
    const flush = () => {
      const text = pending;
      digest.addMany(text, pendingRows);
      pending = '';
      pendingRows = 0;
      return text;
    };
    for (let line = await lines.next(); line !== undefined; line = await lines.next()) {
      if (!line.startsWith(prefix)) {
        lines.unshift(line);
        break;
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        throw new ExportFormatError(`${name}: a row is not valid JSON`);
      }
      const row = (parsed as unknown[])[1];
      if (!Array.isArray(parsed) || parsed.length !== 2 || typeof row !== 'string') throw new ExportFormatError(`${name}: a row is not [table, text]`);
      if (row.includes('\n') || copyFieldCount(row) !== width) throw new ExportFormatError(`${name}: a row does not have the header's ${width} columns`);
      if (copyField(row, table.tenantField) !== tenantId) throw new TenantIsolationError(`${name}: the export holds a row of another tenant`);
      batchRows += 1;
      pendingRows += 1;
      pending += row + '\n';
      bytes += row.length + 1;
      if (pending.length >= CHUNK_BYTES) yield flush();
      if (bytes >= STAGE_BYTES) {
        if (pending) yield flush();
        return;
      }
    }
    ended = true;
    if (pending) yield flush();
  }
  while (!ended) {
    batchRows = 0;
    const copy = client.query(copyFrom(`COPY ${stage} (${columns}) FROM STDIN`)) as NodeJS.WritableStream & { rowCount: number };
    await pipeline(Readable.from(batch(), { objectMode: false }), copy);
    if (copy.rowCount !== batchRows) throw new Error(`${name}: COPY read ${copy.rowCount} of ${batchRows} rows`);
    if (batchRows === 0) continue;
    const result = (await client.query(`INSERT INTO ${qualifiedName(table.config)} (${columns})${overriding} SELECT ${columns} FROM ${stage}${conflict}`)) as { rowCount: number };
    if (mode === 'insert' && result.rowCount !== batchRows) throw new Error(`${name}: wrote ${result.rowCount} of ${batchRows} rows`);
    await client.query(`TRUNCATE ${stage}`);
  }
  await client.query(`DROP TABLE ${stage}`);
  return digest.finish();
}

/**
 * Sequences behind the imported columns moved past the imported values: only raised, and only when
 * an imported value is at or past what the sequence would hand out next; descending ones are left.
 */
async function raiseSequences(client: TenantClient, shape: TableShape, table: PlannedTable): Promise<void> {
  for (const { column, sequence } of shape.sequences) {
    if (!table.exported.columns.some((c) => c.name === column)) continue;
    await client.query(
      `SELECT pg_catalog.setval($1::regclass, m.value)
         FROM (SELECT max(${quoteIdent(column)})::bigint AS value FROM ${qualifiedName(table.config)}) m,
              pg_catalog.pg_sequence q
        WHERE q.seqrelid = $1::regclass AND q.seqincrement > 0 AND m.value IS NOT NULL
          AND m.value >= COALESCE(pg_catalog.pg_sequence_last_value($1::regclass) + 1, q.seqstart)`,
      [sequence],
    );
  }
}
