import type { FuncCall } from 'libpg-query';
import { names } from './expressions.js';

/**
 * Functions the guard refuses anywhere in a statement because they run SQL given as text, read
 * whole tables, files, WAL or statistics: what they read is invisible to the guard. The list is
 * explicit (docs/guard.md repeats it); a function is matched by its unqualified name, whatever
 * schema it is called through (a user function of the same name is refused too).
 */

const RUNS_SQL = 'runs SQL given as text, which the guard cannot check';
const READS_TABLE = 'reads a whole table (every tenant\'s rows) outside any filter the guard can check';
const READS_FILES = 'reads server files (table data among them) outside the guard';
const READS_CHANGES = 'reads the changes (or raw records) of every table from the write-ahead log';
const READS_STATS = 'shows statistics sampled from every tenant\'s rows';
const LOCKS = "takes advisory locks: a tenant's write key (src/write-gate.ts) is one, so another tenant's writes could be frozen, and a session lock outlives the transaction on a pooled connection";

const BY_NAME = new Map<string, string>([
  // Core: SQL text, cursors and whole tables as XML.
  ['query_to_xml', RUNS_SQL],
  ['query_to_xmlschema', RUNS_SQL],
  ['query_to_xml_and_xmlschema', RUNS_SQL],
  ['cursor_to_xml', READS_TABLE],
  ['cursor_to_xmlschema', READS_TABLE],
  ['table_to_xml', READS_TABLE],
  ['table_to_xmlschema', READS_TABLE],
  ['table_to_xml_and_xmlschema', READS_TABLE],
  ['schema_to_xml', READS_TABLE],
  ['schema_to_xmlschema', READS_TABLE],
  ['schema_to_xml_and_xmlschema', READS_TABLE],
  ['database_to_xml', READS_TABLE],
  ['database_to_xmlschema', READS_TABLE],
  ['database_to_xml_and_xmlschema', READS_TABLE],
  // Core: text search over a query given as text.
  ['ts_stat', RUNS_SQL],
  // Core: files, WAL, statistics.
  ['pg_read_file', READS_FILES],
  ['pg_read_binary_file', READS_FILES],
  ['lo_import', READS_FILES],
  ['lo_export', READS_FILES],
  ['pg_logical_slot_get_changes', READS_CHANGES],
  ['pg_logical_slot_peek_changes', READS_CHANGES],
  ['pg_logical_slot_get_binary_changes', READS_CHANGES],
  ['pg_logical_slot_peek_binary_changes', READS_CHANGES],
  ['pg_mcv_list_items', READS_STATS],
  // tablefunc
  ['connectby', RUNS_SQL],
  // xml2
  ['xpath_table', RUNS_SQL],
  // pageinspect, pgrowlocks: raw pages and row locks of a table.
  ['get_raw_page', READS_TABLE],
  ['bt_page_items', READS_TABLE],
  ['pgrowlocks', READS_TABLE],
  // pg_stat_statements: other sessions' statement texts.
  ['pg_stat_statements', READS_STATS],
  // pg_cron
  ['schedule_in_database', RUNS_SQL],
]);

/** Families matched by prefix: dblink (dblink, dblink_exec, dblink_build_sql_insert, ...), tablefunc's crosstab (crosstab, crosstab2, ...), pg_background, pg_walinspect, advisory locks. */
const BY_PREFIX: ReadonlyArray<readonly [string, string]> = [
  ['dblink', RUNS_SQL],
  ['crosstab', RUNS_SQL],
  ['pg_background_', RUNS_SQL],
  ['pg_get_wal_', READS_CHANGES],
  ['pg_advisory_', LOCKS],
  ['pg_try_advisory_', LOCKS],
];

/** Why a function call runs or reads what the guard cannot see, or undefined. */
export function readingFunctionRefusal(call: FuncCall): string | undefined {
  const parts = names(call.funcname);
  const name = parts[parts.length - 1];
  if (name === undefined) return undefined;
  // ts_rewrite(query, select text): the second argument is a query it runs; the three-tsquery form is pure.
  if (name === 'ts_rewrite') return (call.args?.length ?? 0) === 2 ? `ts_rewrite(tsquery, text) ${RUNS_SQL}` : undefined;
  // pg_cron's schedule runs its command later, in another session, outside the tenant transaction.
  if (name === 'schedule' && parts[parts.length - 2] === 'cron') return `cron.schedule() ${RUNS_SQL}`;
  const reason = BY_NAME.get(name) ?? BY_PREFIX.find(([prefix]) => name.startsWith(prefix))?.[1];
  return reason === undefined ? undefined : `${name}() ${reason}`;
}
