import type { FuncCall, Node, VariableSetStmt } from 'libpg-query';
import { names } from './expressions.js';
import { readingFunctionRefusal } from './refused-functions.js';

/**
 * What the guard refuses in tenant scope whatever the tables: statements and calls that change
 * who the session is or which tenant it serves, end or split the tenant transaction, leave session
 * state behind for the next borrower of the connection, or run SQL the guard cannot see.
 * (PITFALLS.md item 9; item 6 for session-level settings.)
 */

// Settings whose change inside the tenant transaction defeats the guard or RLS: the tenant itself,
// the role (RLS is per role), and the search path (what an unqualified table name means).
const PROTECTED_SETTINGS = new Set(['role', 'session_authorization', 'search_path']);

// Settings that change how the server reads the statement text: the guard parses with
// standard_conforming_strings on and UTF-8, so after `SET LOCAL standard_conforming_strings = off`
// (or a client_encoding such as SJIS, whose multi-byte characters can end in a backslash) the
// server would see quotes where the guard saw a string: `note = 'a\' AND note = ' OR true --'`.
const LEXING_SETTINGS = new Set(['standard_conforming_strings', 'client_encoding', 'backslash_quote', 'escape_string_warning']);

const lexingReason = (name: string) =>
  `${name} changes how the server reads statement text (strings, backslashes, multi-byte characters), so the server would no longer read statements as the guard does; it is refused in tenant scope`;

/** Why a `SET`/`RESET` is refused, or undefined when it is allowed (`SET LOCAL` of other settings). */
export function setRefusal(stmt: VariableSetStmt, setting: string): string | undefined {
  const name = (stmt.name ?? '').toLowerCase();
  if (stmt.kind === 'VAR_RESET' || stmt.kind === 'VAR_RESET_ALL') {
    return `RESET ${stmt.kind === 'VAR_RESET_ALL' ? 'ALL' : name} changes session-level state (it can clear the tenant setting or the role) and is refused in tenant scope`;
  }
  if (name === 'transaction' || name === 'transaction snapshot') return undefined; // this transaction only
  if (name === setting) return `SET of ${setting} would change the tenant inside the tenant transaction`;
  if (LEXING_SETTINGS.has(name)) return `SET ${name}: ${lexingReason(name)}`;
  if (PROTECTED_SETTINGS.has(name)) {
    return `SET ${name === 'session_authorization' ? 'SESSION AUTHORIZATION' : name.toUpperCase()} changes who the session is or how table names resolve, and is refused in tenant scope`;
  }
  if (!stmt.is_local) {
    return `session-level SET ${stmt.name ?? ''} outlives the tenant transaction and leaks to the next user of the connection; use SET LOCAL`;
  }
  return undefined;
}

const TRUE_TEXT = new Set(['t', 'true', 'on', 'yes', 'y', '1']);

/** Why a function call is refused anywhere in a statement, or undefined. */
export function functionRefusal(call: FuncCall, setting: string): string | undefined {
  const parts = names(call.funcname);
  const name = parts[parts.length - 1];
  if (name === undefined) return undefined;
  if (name === 'set_config') return setConfigRefusal(call.args ?? [], setting);
  return readingFunctionRefusal(call);
}

function setConfigRefusal(args: readonly Node[], setting: string): string | undefined {
  const nameArg = args[0];
  const target = nameArg && 'A_Const' in nameArg ? nameArg.A_Const.sval?.sval?.toLowerCase() : undefined;
  if (target === undefined) return 'set_config() with a computed setting name could change the tenant setting';
  if (target === setting) return `set_config('${setting}', ...) would change the tenant inside the tenant transaction`;
  if (PROTECTED_SETTINGS.has(target)) return `set_config('${target}', ...) changes who the session is or how table names resolve`;
  if (LEXING_SETTINGS.has(target)) return `set_config('${target}', ...): ${lexingReason(target)}`;
  const local = args[2];
  const isLocal =
    local !== undefined &&
    'A_Const' in local &&
    (local.A_Const.boolval?.boolval === true || TRUE_TEXT.has((local.A_Const.sval?.sval ?? '').toLowerCase()));
  if (!isLocal) return `session-level set_config('${target}', ..., false) outlives the tenant transaction; pass true (local)`;
  return undefined;
}

/** Reasons for statement kinds that are refused outright in tenant scope. */
export function statementRefusal(kind: string): string | undefined {
  switch (kind) {
    case 'TransactionStmt':
      return 'transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE, ROLLBACK TO, PREPARE TRANSACTION) would end or split the tenant transaction; transaction boundaries belong to withTenantTransaction';
    case 'DiscardStmt':
      return 'DISCARD resets session state (settings, prepared statements, temporary tables) and is refused in tenant scope';
    case 'DoStmt':
      return 'DO blocks run code the guard cannot see (it could change the tenant or read any table)';
    case 'CallStmt':
      return 'CALL runs a procedure the guard cannot see';
    case 'PrepareStmt':
    case 'ExecuteStmt':
    case 'DeallocateStmt':
      return 'PREPARE / EXECUTE / DEALLOCATE hide the statement that runs from the guard; send the statement itself with bind parameters';
    case 'ListenStmt':
    case 'UnlistenStmt':
      return 'LISTEN / UNLISTEN leave session state behind for the next user of the connection';
    case 'TruncateStmt':
      return 'TRUNCATE removes every tenant\'s rows (it is not subject to RLS either)';
    case 'VariableSetStmt':
    case 'VariableShowStmt':
    case 'NotifyStmt':
    case 'FetchStmt':
    case 'ClosePortalStmt':
      return undefined;
    default:
      return `${kind.replace(/Stmt$/, '')} statements are not allowed in tenant scope (queries, SET LOCAL, SHOW, cursors, NOTIFY, LOCK of unguarded tables and COPY are); run it outside tenant scope or inside withAdminBypass`;
  }
}

// Statistics hold values sampled from every tenant's rows (most common values, histogram bounds),
// and activity views show other sessions' statement texts. pg_stats hides tables under active RLS,
// not the guarded ones.
const STATISTICS_RELATIONS = new Map([
  ['pg_stats', 'pg_stats shows values sampled from every tenant\'s rows (most common values, histogram bounds)'],
  ['pg_stats_ext', 'pg_stats_ext shows values sampled from every tenant\'s rows'],
  ['pg_stats_ext_exprs', 'pg_stats_ext_exprs shows values sampled from every tenant\'s rows'],
  ['pg_statistic', 'pg_statistic holds values sampled from every tenant\'s rows'],
  ['pg_statistic_ext_data', 'pg_statistic_ext_data holds values sampled from every tenant\'s rows'],
  ['pg_stat_activity', 'pg_stat_activity shows the statements (and their constants) of sessions serving other tenants'],
  ['pg_stat_statements', 'pg_stat_statements shows statements of sessions serving other tenants'],
]);

/** Why writing to a relation is refused whatever its tenant filter: pg_settings' rules call set_config (session-level). */
export function writeTargetRefusal(schema: string | undefined, relname: string): string | undefined {
  if ((schema === undefined || schema === 'pg_catalog') && relname === 'pg_settings') {
    return 'writing to pg_settings runs set_config() at session level (any setting, the lexing ones too); refused in tenant scope';
  }
  return undefined;
}

/** Why naming a relation reads statistics of every tenant, or undefined. */
export function statisticsRefusal(schema: string | undefined, relname: string): string | undefined {
  if (schema !== undefined && schema !== 'pg_catalog' && schema !== 'public') return undefined;
  const reason = STATISTICS_RELATIONS.get(relname);
  return reason === undefined ? undefined : `${reason}; it is refused in tenant scope`;
}
