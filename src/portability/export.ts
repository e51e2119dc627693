import { once } from 'node:events';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { to as copyTo } from 'pg-copy-streams';
import { qualifiedName, quoteIdent, quoteLiteral, type TenancyConfig } from '../config.js';
import type { TenantClient, TenantPool } from '../pool.js';
import { RowDigest, type ExportTrailer, type TableDigest } from './checksum.js';
import { FORMAT_NAME, FORMAT_VERSION, type ExportHeader } from './format.js';
import { PINNED_SETTINGS, withCopySession } from './session.js';
import { tableShape, type TableShape } from './schema.js';

/** Bytes of NDJSON gathered before a write: fewer, larger writes (memory stays bounded by it). */
const CHUNK_BYTES = 64 * 1024;

export interface ExportStreamOptions {
  readonly tenancy: TenancyConfig;
  /** Called with the trailer once the last line is written (the counts and checksums of this export). */
  readonly onTrailer?: (trailer: ExportTrailer) => void;
}

/**
 * One tenant's rows as a stream in the export format (src/portability/format.ts): every tenant table
 * read with `COPY (SELECT ... ORDER BY <primary key>) TO STDOUT` in one REPEATABLE READ, READ ONLY
 * transaction as the tenant (one snapshot; RLS and the WHERE clause both restrict it to the
 * tenant). Rows flow from the server to the consumer with backpressure: memory stays flat whatever
 * the tenant's size. An error (or the consumer going away) destroys the stream and the connection.
 *
 * `tenantId` must be canonical (as the registry holds it): it is written into the COPY's query.
 */
export function exportTenantStream(pool: TenantPool, tenantId: string, options: ExportStreamOptions): Readable {
  const out = new PassThrough({ highWaterMark: CHUNK_BYTES });
  const session = { readOnly: true, isolation: 'repeatable read' as const, tenancy: options.tenancy };
  withCopySession(pool, tenantId, session, async (client) => {
    const trailer = await writeExport(client, out, tenantId, options.tenancy);
    options.onTrailer?.(trailer);
    return { value: undefined, commit: true };
  }).then(
    () => out.end(),
    (error: unknown) => out.destroy(error as Error),
  );
  return out;
}

/**
 * Writes the whole export of the tenant to `out` from an open transaction on `client` (the tenant
 * and PINNED_SETTINGS set: withCopySession), and returns its trailer.
 */
export async function writeExport(client: TenantClient, out: Writable, tenantId: string, tenancy: TenancyConfig): Promise<ExportTrailer> {
  const shapes: TableShape[] = [];
  for (const table of tenancy.tables) shapes.push(await tableShape(client, table));
  const { rows } = (await client.query('SHOW server_version')) as { rows: Array<{ server_version: string }> };
  const header: ExportHeader = {
    format: FORMAT_NAME,
    version: FORMAT_VERSION,
    tenant: tenantId,
    exportedAt: new Date().toISOString(),
    server: rows[0]!.server_version,
    settings: PINNED_SETTINGS,
    tables: shapes.map(({ name, columns, key }) => ({ name, columns, key })),
  };
  await write(out, JSON.stringify(header) + '\n');
  const digests: TableDigest[] = [];
  for (const [index, shape] of shapes.entries()) {
    digests.push(await copyTable(client, out, index, shape, tenancy.tables[index]!, tenantId));
  }
  const trailer: ExportTrailer = { end: true, tables: digests };
  await write(out, JSON.stringify(trailer) + '\n');
  return trailer;
}

async function copyTable(
  client: TenantClient,
  out: Writable,
  index: number,
  shape: TableShape,
  table: TenancyConfig['tables'][number],
  tenantId: string,
): Promise<TableDigest> {
  const columns = shape.columns.map((c) => quoteIdent(c.name)).join(', ');
  // Without a primary key the rows are ordered by their whole text: exports stay comparable.
  const order = shape.key.length ? shape.key.map(quoteIdent).join(', ') : `(t.*)::text COLLATE "C"`;
  const text = `COPY (SELECT ${columns} FROM ${qualifiedName(table)} t WHERE ${quoteIdent(table.tenantColumn)} = ${quoteLiteral(tenantId)} ORDER BY ${order}) TO STDOUT`;
  const digest = new RowDigest(shape.name);
  const decoder = new StringDecoder('utf8');
  const prefix = `[${index},`;
  let carry = '';
  let pending = '';
  const stream = client.query(copyTo(text)) as Readable;
  for await (const chunk of stream) {
    const lines = (carry + decoder.write(chunk as Buffer)).split('\n');
    carry = lines.pop()!;
    // COPY's output is each row followed by `\n`: hashing its bytes as they come is hashing the rows.
    digest.addMany(chunk as Buffer, lines.length);
    for (const line of lines) pending += prefix + JSON.stringify(line) + ']\n';
    if (pending.length >= CHUNK_BYTES) {
      await write(out, pending);
      pending = '';
    }
  }
  carry += decoder.end();
  if (carry !== '') throw new Error(`${shape.name}: COPY output did not end with a newline`);
  if (pending) await write(out, pending);
  return digest.finish();
}

/** Writes with backpressure: waits for 'drain' when the consumer is behind; fails when it is gone. */
async function write(out: Writable, data: string): Promise<void> {
  if (out.destroyed) throw new Error('the export stream was closed by its consumer');
  if (out.write(data)) return;
  const ac = new AbortController();
  try {
    await Promise.race([once(out, 'drain', { signal: ac.signal }), once(out, 'close', { signal: ac.signal }).then(() => {
      throw new Error('the export stream was closed by its consumer');
    })]);
  } finally {
    ac.abort();
  }
}
