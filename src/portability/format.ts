/**
 * The tenant export format, `linkbay-tenant-export` version 1: NDJSON (one JSON value per line,
 * UTF-8, `\n` after each line), in this order:
 *
 * 1. the header, an object:
 *    `{"format":"linkbay-tenant-export","version":1,"tenant":"<id>","exportedAt":"<ISO time>",
 *      "server":"<server_version>","settings":{...},"tables":[{"name":"public.orders",
 *      "columns":[{"name":"id","type":"bigint"},...],"key":["tenant_id","id"]},...]}`
 *    Tables are in the config's order, parents before children (the order rows are written in);
 *    `columns` are the stored columns (generated ones are left to the target to compute); `key` the
 *    primary key, which orders the rows and is the conflict target of an upsert;
 * 2. the rows, each an array `[<table index>, "<row>"]` where `<row>` is the row as PostgreSQL's
 *    COPY text format writes it (values separated by tabs, `\N` for NULL, backslash escapes) under
 *    `settings` (ISO dates in UTC, hex bytea, floats with every digit): the canonical text of the
 *    row, read back exactly by COPY FROM. Rows come table by table, in header order;
 * 3. the trailer, an object: `{"end":true,"tables":[{"name":"public.orders","rows":3,
 *    "sha256":"<hex>"},...]}` with, per table, its row count and the SHA-256 of its rows' text,
 *    each followed by `\n`, in file order.
 *
 * A file without its trailer is truncated; an import refuses it, and anything else not as above.
 */
import type { ExportTrailer } from './checksum.js';

export const FORMAT_NAME = 'linkbay-tenant-export';
export const FORMAT_VERSION = 1;
/** Media type of the export (the HTTP routes). */
export const EXPORT_MEDIA_TYPE = 'application/x-ndjson';

export interface ExportColumn {
  readonly name: string;
  /** `format_type` of the column, e.g. `numeric(12,2)`, `text[]`, `timestamp with time zone`. */
  readonly type: string;
}

export interface ExportTable {
  /** `schema.table`, as in the config. */
  readonly name: string;
  readonly columns: readonly ExportColumn[];
  /** Primary key columns; empty when the table has none. */
  readonly key: readonly string[];
}

export interface ExportHeader {
  readonly format: typeof FORMAT_NAME;
  readonly version: number;
  readonly tenant: string;
  readonly exportedAt: string;
  readonly server: string;
  readonly settings: Readonly<Record<string, string>>;
  readonly tables: readonly ExportTable[];
}

export type { ExportTrailer };

/** One field of a COPY text row, unescaped (`null` for `\N`): how the import finds the tenant column. */
export function copyField(row: string, index: number): string | null | undefined {
  let start = 0;
  for (let i = 0; i < index; i++) {
    const tab = row.indexOf('\t', start);
    if (tab === -1) return undefined;
    start = tab + 1;
  }
  const end = row.indexOf('\t', start);
  const raw = end === -1 ? row.slice(start) : row.slice(start, end);
  if (raw === '\\N') return null;
  return raw.includes('\\') ? unescapeCopy(raw) : raw;
}

/** Number of fields of a COPY text row (tabs are always escaped inside values). */
export function copyFieldCount(row: string): number {
  let count = 1;
  for (let i = row.indexOf('\t'); i !== -1; i = row.indexOf('\t', i + 1)) count += 1;
  return count;
}

const ESCAPES: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\' };

function unescapeCopy(raw: string): string {
  return raw.replace(/\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)/g, (_, code: string) => {
    if (code[0] === 'x') return String.fromCharCode(parseInt(code.slice(1), 16));
    if (/^[0-7]/.test(code)) return String.fromCharCode(parseInt(code, 8));
    return ESCAPES[code] ?? code;
  });
}
