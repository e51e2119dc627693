/**
 * The doctor's findings about each object it read from pg_catalog: the runtime role, each tenant
 * table and its policies, partitions, views, SECURITY DEFINER functions, unique keys and foreign
 * keys. Codes and severities are listed in posture.ts.
 *
 * Policies are recognised by their text (pg_get_expr): the tenant column and
 * `current_setting('<setting>'` must both appear, and no OR (which could widen the match).
 */
import { qualifiedName, quoteIdent, type TenancyConfig, type TenantTable } from '../config.js';
import { ACCESS_POLICY, ISOLATION_POLICY, currentTenantExpression } from '../policies.js';
import type { Finding, Severity } from './index.js';
import type * as q from './queries.js';
import { SERVER_FILE_ROLES } from './queries.js';

export function roleFindings(role: q.RoleRow, name: string, setting: string, versionNum: number): Finding[] {
  const object = `role ${name}`;
  const findings: Finding[] = [];
  const add = (code: string, severity: Severity, message: string, fix: string) => findings.push({ code, severity, object, message, fix });
  if (role.currentUser !== name) {
    add('LBMT_CONNECTED_AS_OTHER_ROLE', 'info', `checked while connected as ${role.currentUser}${role.currentBypassesRls ? ' (which bypasses RLS: never use it for application queries)' : ''}; the findings describe the runtime role ${name}`, `connect the application as ${name}, or pass the role it really uses as runtimeRole / --runtime-role`);
  }
  if (!role.exists) {
    add('LBMT_ROLE_MISSING', 'error', 'the runtime role does not exist', `CREATE ROLE ${quoteIdent(name)} LOGIN NOSUPERUSER NOBYPASSRLS; -- or apply the generated roles migration`);
    return findings;
  }
  if (role.superuser) add('LBMT_ROLE_SUPERUSER', 'error', 'the runtime role is a superuser: superusers bypass every row level security policy', `ALTER ROLE ${quoteIdent(name)} NOSUPERUSER;`);
  if (role.bypassrls) add('LBMT_ROLE_BYPASSRLS', 'error', 'the runtime role has BYPASSRLS: no policy applies to it', `ALTER ROLE ${quoteIdent(name)} NOBYPASSRLS;`);
  // A default makes a session that set no tenant start in one: "no tenant = no rows" (PITFALLS 11)
  // no longer holds for work outside a tenant transaction, and the probes (SET ROLE) never see it.
  for (const d of role.settingDefaults) {
    const alter = d.role === null ? (d.database === null ? 'ALTER ROLE ALL' : `ALTER DATABASE ${quoteIdent(d.database)}`) : `ALTER ROLE ${quoteIdent(d.role)}`;
    const where = d.role !== null && d.database !== null ? ` IN DATABASE ${quoteIdent(d.database)}` : '';
    const scope = `${d.role === null ? 'every role' : `role ${d.role}`} on ${d.database === null ? 'every database' : `database ${d.database}`}`;
    add('LBMT_TENANT_SETTING_DEFAULT', 'error', `${setting} defaults to ${JSON.stringify(d.value)} for ${scope}: a session that sets no tenant starts as that tenant and sees its rows`,
      `${alter}${where} RESET ${setting};`);
  }
  // Before PostgreSQL 16 CREATEROLE may grant any role but a superuser one, to itself too: the
  // admin role, BYPASSRLS, included. From 16 it needs ADMIN OPTION on the role granted.
  if (role.createrole && !role.superuser && versionNum < 160000) {
    add('LBMT_ROLE_CAN_ESCALATE', 'error', 'the runtime role has CREATEROLE, which before PostgreSQL 16 may grant itself any non-superuser role, one with BYPASSRLS included', `ALTER ROLE ${quoteIdent(name)} NOCREATEROLE;`);
  }
  for (const target of role.escalations) {
    const files = (SERVER_FILE_ROLES as readonly string[]).includes(target);
    add('LBMT_ROLE_CAN_ESCALATE', 'error', files
      ? `the runtime role is a member of ${target}: it reaches the server's files as the server's OS user, the tables' data files (every tenant's rows) included, where no policy applies`
      : `the runtime role is a member of ${target}, which bypasses RLS: SET ROLE ${target} escapes isolation`, `REVOKE ${quoteIdent(target)} FROM ${quoteIdent(name)};`);
  }
  return findings;
}

/**
 * The tenant column compared to the setting: the expression, or one of its top-level AND terms
 * (AND only narrows), is `column = value` (either side) where the value is the setting and nothing
 * else: pg_catalog's current_setting of it, NULLIF, casts, the initplan's `(SELECT .. AS "nullif")`,
 * no other literal than '' (VALUE_WORDS). Mentioning the column and the setting is not enough:
 * `tenant_id <> current_setting(..)`, `tenant_id = COALESCE(current_setting(..), tenant_id)` or
 * a fallback to a constant tenant, another setting or a subquery when none is set all do, and fail
 * open; `public.current_setting(..)` is someone else's function.
 */
export function isTenantCheck(expression: string | null, column: string, setting: string): boolean {
  if (!expression) return false;
  // Literals masked to their length (so that what they hold is not read as SQL), but for the setting's name.
  const name = `'${setting.replaceAll("'", "''")}'`;
  const masked = expression.replace(/'(?:[^']|'')*'/g, (literal) => (literal === name ? literal : `'${'x'.repeat(literal.length - 2)}'`));
  const columnRef = new RegExp(`^(?:${escapeRegExp(column)}|"${escapeRegExp(column.replaceAll('"', '""'))}")$`);
  const mentionsColumn = new RegExp(`(^|[^A-Za-z0-9_$"])${escapeRegExp(column)}($|[^A-Za-z0-9_$"])`);
  const settingRef = new RegExp(`(^|[^A-Za-z0-9_$".])(pg_catalog\\.)?current_setting\\(${escapeRegExp(name)}`);
  const equality = (term: string) => {
    const sides = splitTopLevel(term, ' = ');
    if (sides.length !== 2) return false;
    const [left, right] = sides.map(unwrap) as [string, string];
    const [col, value] = columnRef.test(left) ? [left, right] : [right, left];
    return columnRef.test(col) && !mentionsColumn.test(value.replaceAll(name, "''")) && settingRef.test(value) && onlyTheSetting(value, name);
  };
  return splitTopLevel(unwrap(masked), ' AND ').some((term) => equality(unwrap(term)));
}

/** The words a value made of the setting alone is written with, as pg_get_expr prints it (lower case; `"nullif"` is the initplan's alias). */
const VALUE_WORDS = new Set(['current_setting', 'nullif', 'pg_catalog', 'select', 'as', 'true', 'false', 'text', 'uuid', 'bigint', '"nullif"']);

/** `value` (literals masked but for `name`) has no word but VALUE_WORDS and no literal but `name` and ''. */
function onlyTheSetting(value: string, name: string): boolean {
  const rest = value.replaceAll(name, ' ').replaceAll("''", ' ');
  if (rest.includes("'")) return false;
  return (rest.match(/"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$]*|[0-9]+/g) ?? []).every((word) => VALUE_WORDS.has(word.startsWith('"') ? word : word.toLowerCase()));
}

/** `text` split at `separator` where it stands outside parentheses and double-quoted names. */
function splitTopLevel(text: string, separator: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let quoted = false;
  let start = 0;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (c === '"') quoted = !quoted;
    else if (!quoted && c === '(') depth += 1;
    else if (!quoted && c === ')') depth -= 1;
    else if (!quoted && depth === 0 && text.startsWith(separator, i)) {
      parts.push(text.slice(start, i));
      start = i + separator.length;
      i += separator.length - 1;
    }
  }
  parts.push(text.slice(start));
  return parts;
}

/** `text` without the parentheses that enclose all of it. */
function unwrap(text: string): string {
  let t = text.trim();
  while (t.startsWith('(') && t.endsWith(')') && balanced(t.slice(1, -1))) t = t.slice(1, -1).trim();
  return t;
}

function balanced(text: string): boolean {
  let depth = 0;
  let quoted = false;
  for (const c of text) {
    if (c === '"') quoted = !quoted;
    else if (!quoted && c === '(') depth += 1;
    else if (!quoted && c === ')' && --depth < 0) return false;
  }
  return depth === 0;
}

type Isolation = { state: 'ok' | 'missing' | 'permissive' | 'no-check' | 'weak-check'; policy?: string };

function isolationOf(policies: q.PolicyRow[], column: string, setting: string): Isolation {
  const candidates = policies.filter((p) => p.applies && p.cmd === '*' && isTenantCheck(p.using, column, setting));
  const restrictive = candidates.filter((p) => !p.permissive);
  const ok = restrictive.find((p) => isTenantCheck(p.check, column, setting));
  if (ok) return { state: 'ok', policy: ok.name };
  const noCheck = restrictive.find((p) => p.check === null);
  if (noCheck) return { state: 'no-check', policy: noCheck.name };
  if (restrictive[0]) return { state: 'weak-check', policy: restrictive[0].name };
  const permissive = candidates.find((p) => p.permissive);
  return permissive ? { state: 'permissive', policy: permissive.name } : { state: 'missing' };
}

function isolationPolicySql(config: TenancyConfig, table: string, column: string): string {
  const condition = `${quoteIdent(column)} = ${currentTenantExpression(config)}`;
  return `DROP POLICY IF EXISTS ${ISOLATION_POLICY} ON ${table};\nCREATE POLICY ${ISOLATION_POLICY} ON ${table} AS RESTRICTIVE FOR ALL TO PUBLIC\n  USING (${condition})\n  WITH CHECK (${condition});`;
}

export function tableFindings(config: TenancyConfig, row: q.TableRow, policies: q.PolicyRow[], runtimeRole: string): Finding[] {
  const { table: t } = row;
  const object = `${t.schema}.${t.table}`;
  const sql = qualifiedName(t);
  const column = quoteIdent(t.tenantColumn);
  const findings: Finding[] = [];
  const add = (code: string, severity: Severity, message: string, fix: string) => findings.push({ code, severity, object, message, fix });
  if (row.relid === null) {
    add('LBMT_TABLE_MISSING', 'error', 'the configured tenant table does not exist', `create the table, or correct \`tables\` in the config; then generate and apply the RLS migrations`);
    return findings;
  }
  if (row.runtimeOwns) {
    const direct = row.owner === runtimeRole;
    add('LBMT_ROLE_OWNS_TABLE', 'error', direct ? `the runtime role ${runtimeRole} owns this table: owners can disable RLS and drop policies` : `the runtime role ${runtimeRole} is a member of the owner ${row.owner}, so it acts as the owner (can disable RLS and drop policies)`,
      direct ? `ALTER TABLE ${sql} OWNER TO ${quoteIdent(config.roles.owner)};` : `REVOKE ${quoteIdent(row.owner ?? '')} FROM ${quoteIdent(runtimeRole)};`);
  }
  if (row.ownedSchema !== null) {
    // DROP TABLE is allowed to the schema's owner, whoever owns the table; pg_database_owner (the
    // database's owner) owns schema public from PostgreSQL 15.
    add('LBMT_ROLE_OWNS_SCHEMA', 'error', `the runtime role ${runtimeRole} owns (or is a member of the owner of) schema ${row.ownedSchema}: it may drop this table, every tenant's rows with it`,
      `ALTER SCHEMA ${quoteIdent(row.ownedSchema)} OWNER TO ${quoteIdent(config.roles.owner)}; -- and if ${runtimeRole} owns the database: ALTER DATABASE <db> OWNER TO ${quoteIdent(config.roles.owner)};`);
  }
  if (!row.hasColumn) add('LBMT_TENANT_COLUMN_MISSING', 'error', `the tenant column ${t.tenantColumn} does not exist`, `ALTER TABLE ${sql} ADD COLUMN ${column} ${config.tenantIdType} NOT NULL; -- or correct tenantColumn in the config`);
  else {
    if (row.columnType !== config.tenantIdType) add('LBMT_TENANT_COLUMN_TYPE', 'error', `the tenant column ${t.tenantColumn} is ${row.columnType}, the config says ${config.tenantIdType}`, `ALTER TABLE ${sql} ALTER COLUMN ${column} TYPE ${config.tenantIdType} USING ${column}::${config.tenantIdType}; -- or correct tenantIdType`);
    if (!row.notNull) add('LBMT_TENANT_COLUMN_NULLABLE', 'warning', `the tenant column ${t.tenantColumn} is nullable: rows without a tenant belong to nobody and are visible to no tenant`, `ALTER TABLE ${sql} ALTER COLUMN ${column} SET NOT NULL;`);
    if (!row.tenantIndex) add('LBMT_TENANT_INDEX_MISSING', 'warning', `no index has ${t.tenantColumn} as its first column: every query filters the tenant row by row`, `CREATE INDEX ON ${sql} (${column});`);
  }
  if (row.beyondRls.length) {
    add('LBMT_PRIVILEGE_BEYOND_RLS', 'error', `the runtime role ${runtimeRole} has ${row.beyondRls.join(', ')} on this table, which row level security does not govern: ` +
      (row.beyondRls.includes('TRUNCATE') ? "TRUNCATE empties every tenant's rows" : "a trigger it adds sees every tenant's writes"),
      `REVOKE ${row.beyondRls.join(', ')} ON ${sql} FROM ${quoteIdent(runtimeRole)}; -- and from PUBLIC or the role it has them through`);
  }
  if (!row.rls) add('LBMT_RLS_DISABLED', 'error', 'row level security is not enabled: every role with privileges sees every tenant', `ALTER TABLE ${sql} ENABLE ROW LEVEL SECURITY;`);
  if (!row.forced) add('LBMT_RLS_NOT_FORCED', 'error', `row level security is not forced: the owner (${row.owner}) bypasses every policy`, `ALTER TABLE ${sql} FORCE ROW LEVEL SECURITY;`);

  const isolation = isolationOf(policies, t.tenantColumn, config.setting);
  const policySql = isolationPolicySql(config, sql, t.tenantColumn);
  const setting = `current_setting('${config.setting}')`;
  if (isolation.state === 'missing') add('LBMT_ISOLATION_POLICY_MISSING', 'error', `no RESTRICTIVE FOR ALL policy applying to ${runtimeRole} compares ${t.tenantColumn} to ${setting} in USING and WITH CHECK`, policySql);
  if (isolation.state === 'permissive') add('LBMT_ISOLATION_POLICY_PERMISSIVE', 'error', `the isolation policy ${isolation.policy} is PERMISSIVE: permissive policies are OR-ed, so any other permissive policy (${ACCESS_POLICY} is USING (true)) opens every tenant`, policySql);
  if (isolation.state === 'weak-check') add('LBMT_ISOLATION_WITH_CHECK_WEAK', 'error', `the isolation policy ${isolation.policy} has a WITH CHECK that does not compare ${t.tenantColumn} to ${setting}: writes can land in another tenant`, policySql);
  if (isolation.state === 'no-check') add('LBMT_ISOLATION_WITH_CHECK_MISSING', 'warning', `the isolation policy ${isolation.policy} has no WITH CHECK; PostgreSQL applies USING to new rows of a FOR ALL policy, but a later ALTER POLICY to FOR SELECT would silently stop checking writes`, policySql);

  const applying = policies.filter((p) => p.applies && p.permissive);
  const extras = applying.filter((p) => p.name !== ACCESS_POLICY && p.name !== isolation.policy);
  const isolated = isolation.state === 'ok' || isolation.state === 'no-check' || isolation.state === 'weak-check';
  for (const extra of extras) {
    add('LBMT_EXTRA_PERMISSIVE_POLICY', isolated ? 'warning' : 'error', isolated
      ? `permissive policy ${extra.name} widens what ${runtimeRole} may see within the tenant; the restrictive isolation policy still applies`
      : `permissive policy ${extra.name} applies to ${runtimeRole} and no restrictive isolation policy limits it to one tenant`,
      `DROP POLICY ${quoteIdent(extra.name)} ON ${sql}; -- unless it is meant to be there`);
  }
  if (applying.length === 0) add('LBMT_NO_PERMISSIVE_POLICY', 'warning', `no permissive policy applies to ${runtimeRole}: it sees no rows at all (safe, but the application cannot work)`, `CREATE POLICY ${ACCESS_POLICY} ON ${sql} AS PERMISSIVE FOR ALL TO ${quoteIdent(runtimeRole)} USING (true) WITH CHECK (true);`);
  return findings;
}

export function partitionFindings(config: TenancyConfig, parent: TenantTable, partition: q.PartitionRow, policies: q.PolicyRow[], runtimeRole: string): Finding[] {
  const findings: Finding[] = [];
  const sql = qualifiedName(partition);
  const name = `${partition.schema}.${partition.table}`;
  if (partition.runtimeOwns) {
    // As for the tenant table itself: the owner may turn RLS off on its partition and read every tenant there.
    const direct = partition.owner === runtimeRole;
    findings.push({
      code: 'LBMT_ROLE_OWNS_TABLE',
      severity: 'error',
      object: name,
      message: `partition of tenant table ${parent.schema}.${parent.table}: ` + (direct ? `the runtime role ${runtimeRole} owns it, so it can disable RLS on it and drop its policies` : `the runtime role ${runtimeRole} is a member of its owner ${partition.owner}, so it acts as the owner (can disable RLS and drop policies)`),
      fix: direct ? `ALTER TABLE ${sql} OWNER TO ${quoteIdent(config.roles.owner)};` : `REVOKE ${quoteIdent(partition.owner)} FROM ${quoteIdent(runtimeRole)};`,
    });
  }
  const missing: string[] = [];
  if (!partition.rls) missing.push('RLS is not enabled');
  if (!partition.forced) missing.push('RLS is not forced');
  if (isolationOf(policies, parent.tenantColumn, config.setting).state !== 'ok') missing.push('it has no restrictive isolation policy');
  if (missing.length === 0) return findings;
  return [...findings, {
    code: 'LBMT_PARTITION_UNPROTECTED',
    severity: 'error',
    object: name,
    message: `partition of tenant table ${parent.schema}.${parent.table}: ${missing.join(', ')}; querying the partition directly skips the parent's policies`,
    fix: `ALTER TABLE ${sql} ENABLE ROW LEVEL SECURITY;\nALTER TABLE ${sql} FORCE ROW LEVEL SECURITY;\n${isolationPolicySql(config, sql, parent.tenantColumn)}\n-- or add ${name} to \`tables\` and regenerate`,
  }];
}

export function dependentFindings(rows: q.DependentRow[], tables: Map<number, TenantTable>, versionNum: number, runtimeRole: string): Finding[] {
  const findings: Finding[] = [];
  for (const row of rows) {
    const name = `${row.schema}.${row.table}`;
    const sql = qualifiedName(row);
    const over = row.roots.map((relid) => tables.get(relid)).filter(Boolean).map((t) => `${t!.schema}.${t!.table}`).join(', ');
    if (row.relkind === 'm') {
      findings.push({ code: 'LBMT_MATVIEW_OVER_TENANT_TABLE', severity: 'error', object: `materialized view ${name}`, message: `materialized view over ${over}: it stores every tenant's rows and has no row level security`, fix: `DROP MATERIALIZED VIEW ${sql}; -- or REVOKE ALL ON ${sql} FROM ${quoteIdent(runtimeRole)};` });
    } else if (!row.securityInvoker) {
      const modern = versionNum >= 150000;
      findings.push({
        code: 'LBMT_VIEW_DEFINER_RIGHTS',
        severity: modern ? 'error' : 'warning',
        object: `view ${name}`,
        message: `view over ${over} runs with the rights of its owner ${row.owner}, not of the querying role` + (modern ? '' : ' (before PostgreSQL 15 every view does)'),
        fix: modern ? `ALTER VIEW ${sql} SET (security_invoker = true);` : `upgrade to PostgreSQL 15+ and ALTER VIEW ${sql} SET (security_invoker = true); until then make sure its owner is subject to RLS (not superuser, no BYPASSRLS, FORCEd tables)`,
      });
    }
  }
  return findings;
}

/**
 * A rule on a tenant table sees every tenant's writes and can copy them anywhere its owner may
 * write; a rule elsewhere whose actions use a tenant table runs them as its relation's owner, which
 * crosses tenants when that owner bypasses RLS (otherwise FORCE keeps it to the current tenant).
 */
export function ruleFindings(rows: q.RuleRow[], tables: Map<number, TenantTable>): Finding[] {
  return rows.map((row) => {
    const over = row.roots.map((relid) => tables.get(relid)).filter(Boolean).map((t) => `${t!.schema}.${t!.table}`).join(', ');
    const name = `${row.schema}.${row.table}`;
    const error = row.onTenantTable || row.ownerBypassesRls;
    const why = row.onTenantTable
      ? `rule on tenant table ${name}: it runs on every tenant's statements, with the rights of ${row.owner}, and can send their rows where row level security does not follow`
      : `rule on ${name} uses ${over} with the rights of its owner ${row.owner}` + (row.ownerBypassesRls ? ', which bypasses row level security: whoever may write to it reaches every tenant' : ' (subject to RLS, so limited to the current tenant)');
    return { code: 'LBMT_RULE_OVER_TENANT_TABLE', severity: error ? 'error' as const : 'warning' as const, object: `rule ${row.rule} on ${name}`, message: why,
      fix: `DROP RULE ${quoteIdent(row.rule)} ON ${qualifiedName(row)}; -- a trigger running as the caller does the same within RLS` };
  });
}

/**
 * `body` names the table: its name as a word, unqualified or qualified by its own schema (so
 * `linkbay.tenant_moves` is not a mention of a tenant table `public.tenant_moves`).
 */
function mentions(body: string, t: TenantTable): boolean {
  const word = (name: string) => `(?:"${escapeRegExp(name.replaceAll('"', '""'))}"|${escapeRegExp(name)})`;
  const name = new RegExp(`(^|[^A-Za-z0-9_$"])${word(t.table)}($|[^A-Za-z0-9_$"])`, 'gi');
  const ownSchema = new RegExp(`(^|[^A-Za-z0-9_$"])${word(t.schema)}\\s*\\.\\s*$`, 'i');
  for (const match of body.matchAll(name)) {
    const before = body.slice(0, match.index! + match[1]!.length);
    if (!/\.\s*$/.test(before) || ownSchema.test(before)) return true;
  }
  return false;
}

export function definerFindings(rows: q.DefinerFunctionRow[], tables: TenantTable[], runtimeRole: string): Finding[] {
  const findings: Finding[] = [];
  for (const row of rows) {
    const mentioned = tables.filter((t) => mentions(row.body, t));
    if (mentioned.length === 0) continue;
    const names = mentioned.map((t) => `${t.schema}.${t.table}`).join(', ');
    const object = `function ${row.signature}`;
    // Owned by a role that bypasses RLS, it reads every tenant's rows for whoever may call it.
    if (row.ownerBypassesRls && row.callable) {
      findings.push({ code: 'LBMT_SECURITY_DEFINER_FUNCTION', severity: 'error', object, message: `SECURITY DEFINER function mentions ${names} and runs as ${row.owner}, which bypasses row level security; ${runtimeRole} may call it, so no policy limits what it reads or writes`, fix: `REVOKE EXECUTE ON FUNCTION ${row.signature} FROM PUBLIC, ${quoteIdent(runtimeRole)};\n-- or ALTER FUNCTION ${row.signature} SECURITY INVOKER; or give it an owner subject to RLS` });
    } else {
      findings.push({ code: 'LBMT_SECURITY_DEFINER_FUNCTION', severity: 'warning', object, message: `SECURITY DEFINER function mentions ${names}: it runs as its owner, so RLS applies to the owner, not the caller`, fix: `ALTER FUNCTION ${row.signature} SECURITY INVOKER; -- unless it deliberately crosses tenants` });
    }
    if (!row.pinnedSearchPath) {
      findings.push({ code: 'LBMT_SECURITY_DEFINER_SEARCH_PATH', severity: 'warning', object, message: 'SECURITY DEFINER function without a pinned search_path: a caller can shadow the objects it uses', fix: `ALTER FUNCTION ${row.signature} SET search_path = pg_catalog, pg_temp; -- and schema-qualify the tables it uses` });
    }
  }
  return findings;
}

/**
 * A function that sets the tenant for the session (`set_config(setting, .., false)`, `SET setting`,
 * `SET SESSION setting`) rather than the transaction: the value outlives COMMIT and the next
 * borrower of the pooled connection starts as that tenant (PITFALLS 6). Read from the body's text;
 * a SET built by dynamic SQL (EXECUTE format(..)) is only seen when it names the setting literally.
 */
export function sessionSettingFindings(rows: Array<{ signature: string; body: string }>, setting: string): Finding[] {
  const name = escapeRegExp(setting);
  const setStatement = new RegExp(`\\bSET\\s+(?:SESSION\\s+)?(?!LOCAL\\b)${name}\\s*(?:=|\\bTO\\b)`, 'i');
  return rows.flatMap((row) => {
    const body = row.body.replace(/--[^\n]*/g, '');
    const viaSetConfig = setConfigCalls(body, setting).some((args) => !/^\s*true\s*$/i.test(args.at(-1) ?? ''));
    if (!viaSetConfig && !setStatement.test(body)) return [];
    return [{
      code: 'LBMT_FUNCTION_SETS_SESSION_TENANT',
      severity: 'error' as const,
      object: `function ${row.signature}`,
      message: `sets ${setting} for the session, not the transaction: the tenant outlives COMMIT, and the next use of the pooled connection without a tenant of its own runs as it`,
      fix: `set it for the transaction only: set_config('${setting}', value, true) or SET LOCAL ${setting}; or DROP FUNCTION ${row.signature};`,
    }];
  });
}

/** The argument lists (split at top-level commas) of every set_config call whose first argument is the setting. */
function setConfigCalls(body: string, setting: string): string[][] {
  const calls: string[][] = [];
  const start = new RegExp(`set_config\\s*\\(\\s*'${escapeRegExp(setting)}'`, 'gi');
  for (const match of body.matchAll(start)) {
    let depth = 0;
    let end = match.index! + match[0].indexOf('(');
    for (let i = end; i < body.length; i += 1) {
      if (body[i] === '(') depth += 1;
      else if (body[i] === ')' && --depth === 0) { end = i; break; }
    }
    const inner = body.slice(match.index! + match[0].indexOf('(') + 1, end);
    calls.push(splitTopLevel(inner, ','));
  }
  return calls;
}

export function uniqueFindings(rows: q.UniqueIndexRow[], tables: Map<number, TenantTable>): Finding[] {
  return rows.flatMap((row) => {
    const t = tables.get(row.relid)!;
    if (row.columns.includes(t.tenantColumn)) return [];
    const what = row.constraint ? `constraint ${row.constraint}` : `unique index ${row.name}`;
    const table = qualifiedName(t);
    const key = [t.tenantColumn, ...row.columns].map(quoteIdent).join(', ');
    const fix = row.constraint
      ? `ALTER TABLE ${table} DROP CONSTRAINT ${quoteIdent(row.constraint)}, ADD CONSTRAINT ${quoteIdent(row.constraint)} ${row.constraintType === 'p' ? 'PRIMARY KEY' : 'UNIQUE'} (${key});`
      : `CREATE UNIQUE INDEX ON ${table} (${key});\nDROP INDEX ${qualifiedName({ schema: t.schema, table: row.name })};`;
    return [{
      code: 'LBMT_UNIQUE_WITHOUT_TENANT',
      severity: 'warning' as const,
      object: `${t.schema}.${t.table} ${what}`,
      message: `${what} on (${row.columns.join(', ')}) leaves out ${t.tenantColumn}: a duplicate-key error tells one tenant that another tenant has that value`,
      fix,
    }];
  });
}

export function foreignKeyFindings(rows: q.ForeignKeyRow[], tables: Map<number, TenantTable>): Finding[] {
  return rows.flatMap((row) => {
    const target = tables.get(row.toRelid);
    if (!target) return []; // references a shared table (e.g. the tenants registry): nothing of another tenant to reveal
    const source = tables.get(row.fromRelid);
    const position = row.refColumns.indexOf(target.tenantColumn);
    if (position >= 0 && (!source || row.columns[position] === source.tenantColumn)) return [];
    return [{
      code: 'LBMT_FOREIGN_KEY_WITHOUT_TENANT',
      severity: 'warning' as const,
      object: `${row.fromTable} foreign key ${row.name}`,
      message: `foreign key (${row.columns.join(', ')}) references ${row.toTable} (${row.refColumns.join(', ')}) without matching ${target.tenantColumn}: the REFERENCES check ignores RLS, so it can link to, and reveal, another tenant's rows`,
      fix: `reference ${row.toTable} by a composite key that starts with its tenant column, e.g. FOREIGN KEY (${source ? source.tenantColumn : 'tenant_id'}, ${row.columns.join(', ')}) REFERENCES ${row.toTable} (${target.tenantColumn}, ${row.refColumns.join(', ')})`,
    }];
  });
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
