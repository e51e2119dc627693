import type { TenancyConfig, TenantTable } from '../config.js';
import { TenantIsolationError } from '../errors.js';
import { ExportFormatError } from './errors.js';
import { FORMAT_NAME, FORMAT_VERSION, type ExportColumn, type ExportHeader, type ExportTable } from './format.js';
import type { TableDigest } from './checksum.js';

export interface PlannedTable {
  readonly exported: ExportTable;
  readonly config: TenantTable;
  /** Position of the tenant column among the exported columns. */
  readonly tenantField: number;
}

/**
 * Checks the first line of an export against the format, the tenant and the config, and returns the
 * tables in file order with their config. Refusals are ExportFormatError (TenantIsolationError for
 * an export of another tenant).
 */
export function readHeader(line: string | undefined, tenantId: string, tenancy: TenancyConfig): { header: ExportHeader; tables: PlannedTable[] } {
  if (line === undefined || line === '') throw new ExportFormatError('the export is empty');
  let header: ExportHeader;
  try {
    header = JSON.parse(line) as ExportHeader;
  } catch {
    throw new ExportFormatError('the first line of the export is not JSON');
  }
  if (header === null || typeof header !== 'object' || header.format !== FORMAT_NAME) {
    throw new ExportFormatError(`the export is not a ${FORMAT_NAME} file`);
  }
  if (header.version !== FORMAT_VERSION) {
    throw new ExportFormatError(`export format version ${JSON.stringify(header.version)} is not supported (this version reads ${FORMAT_VERSION})`);
  }
  if (header.tenant !== tenantId) throw new TenantIsolationError('the export is of another tenant');
  if (!Array.isArray(header.tables)) throw new ExportFormatError('the export header has no `tables`');
  const order = tenancy.tables.map((t) => `${t.schema}.${t.table}`);
  const tables: PlannedTable[] = [];
  let last = -1;
  for (const exported of header.tables) {
    const position = order.indexOf(exported?.name);
    if (position === -1) throw new ExportFormatError('the export holds a table that is not a tenant table of the config');
    if (position <= last) throw new ExportFormatError(`${exported.name}: tables must come once each, in the config's order`);
    last = position;
    if (!Array.isArray(exported.columns) || !exported.columns.every((c: ExportColumn) => typeof c?.name === 'string' && typeof c?.type === 'string')) {
      throw new ExportFormatError(`${exported.name}: the header's columns are not valid`);
    }
    if (!Array.isArray(exported.key) || !exported.key.every((k: string) => exported.columns.some((c: ExportColumn) => c.name === k))) {
      throw new ExportFormatError(`${exported.name}: the header's key is not valid`);
    }
    const config = tenancy.tables[position]!;
    const tenantField = exported.columns.findIndex((c: ExportColumn) => c.name === config.tenantColumn);
    if (tenantField === -1) throw new ExportFormatError(`${exported.name}: the export has no \`${config.tenantColumn}\` column`);
    tables.push({ exported, config, tenantField });
  }
  return { header, tables };
}

/** Checks the trailer against the digests of the rows read; ExportFormatError when any differs. */
export function checkTrailer(line: string, digests: readonly TableDigest[]): void {
  let trailer: { end?: unknown; tables?: unknown };
  try {
    trailer = JSON.parse(line) as typeof trailer;
  } catch {
    throw new ExportFormatError('a line of the export is not JSON');
  }
  if (trailer?.end !== true || !Array.isArray(trailer.tables)) throw new ExportFormatError('the export has a line that is neither a row nor the trailer');
  const expected = trailer.tables as TableDigest[];
  if (expected.length !== digests.length) throw new ExportFormatError('the trailer does not list the tables of the header');
  for (const [i, digest] of digests.entries()) {
    const claimed = expected[i];
    if (claimed?.name !== digest.name) throw new ExportFormatError('the trailer does not list the tables of the header');
    if (claimed.rows !== digest.rows) throw new ExportFormatError(`${digest.name}: the export has ${digest.rows} rows, its trailer says ${Number(claimed.rows)}`);
    if (claimed.sha256 !== digest.sha256) throw new ExportFormatError(`${digest.name}: the rows do not match the trailer's checksum (the file was changed)`);
  }
}
