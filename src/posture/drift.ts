/**
 * Drift: what changed on a tenant table since its migrations ran. Each table's generated
 * `manifest-<schema>-<table>` migration recorded its RLS flags, policies and grants in
 * `linkbay.policy_manifest` (sql/00004-policy-manifest.sql); this reads the same state from the live
 * catalog (`linkbay.table_state`, so both sides are normalised alike) and names each difference.
 * The catalog checks (findings.ts) judge whether the live state isolates; drift says that it is not
 * what was migrated — what a schema tool's `push` or a hand-made hotfix does (drizzle-orm #4948,
 * #4763), even when the result still looks plausible.
 *
 * | code                        | severity             | what                                                            |
 * |-----------------------------|----------------------|-----------------------------------------------------------------|
 * | LBMT_DRIFT_RLS_DISABLED     | error                | row level security was enabled at migration and is not now      |
 * | LBMT_DRIFT_FORCE_REMOVED    | error                | FORCE ROW LEVEL SECURITY was set at migration and is not now    |
 * | LBMT_DRIFT_POLICY_DROPPED   | error / warning      | a migrated policy is gone: error for a RESTRICTIVE one (only ever narrows, so dropping it widens), warning for a permissive one (fails closed) |
 * | LBMT_DRIFT_POLICY_CHANGED   | error                | a migrated policy's USING, WITH CHECK, roles, command or kind changed |
 * | LBMT_DRIFT_POLICY_RENAMED   | warning              | a migrated policy is there under another name (the library and doctor know policies by name) |
 * | LBMT_DRIFT_POLICY_ADDED     | warning / info / error | a policy nobody migrated: warning when permissive (OR-ed with the others; the RESTRICTIVE isolation still applies), info when restrictive (only narrows), error on engine "citus" (its only isolation is permissive) |
 * | LBMT_DRIFT_GRANT_WIDENED    | error / warning      | a privilege (table or column) nobody migrated: error to PUBLIC, to a role that bypasses RLS, or of TRUNCATE/TRIGGER (beyond RLS); warning otherwise (RLS still applies to it) |
 * | LBMT_DRIFT_GRANT_NARROWED   | warning              | a migrated privilege was revoked (the application may fail; nothing leaks) |
 * | LBMT_DRIFT_OWNER_CHANGED    | warning              | the table has another owner than at migration                   |
 * | LBMT_DRIFT_UNRECORDED       | info                 | a configured table has no manifest entry (migrated before the manifest existed, or without its migration) |
 * | LBMT_DRIFT_NO_MANIFEST      | info                 | no readable linkbay.policy_manifest (library migrations not applied: `--no-registry`); reported once |
 *
 * A table migrated before the manifest existed is recorded by the upgrade, as it is then: drift is
 * seen from that moment (the catalog checks judge what was there before).
 * A change that only tightens (RLS or FORCE turned on) is not drift worth a finding. Partitions are
 * not in the manifest (LBMT_PARTITION_UNPROTECTED covers them), nor are indexes. A change meant to
 * stay is recorded again with `SELECT linkbay.record_table_state('<table>')`, which every fix offers.
 */
import { qualifiedName, quoteIdent, quoteLiteral, type TenancyConfig, type TenantTable } from '../config.js';
import type { Finding, Severity } from './index.js';
import type { Queryable } from './queries.js';

/** One policy as linkbay.table_state reads it. */
export interface PolicyState {
  permissive: boolean;
  /** pg_policy.polcmd: r(SELECT) a(INSERT) w(UPDATE) d(DELETE) *(ALL). */
  cmd: string;
  roles: string[];
  using: string | null;
  check: string | null;
}

/** A table's state as linkbay.table_state reads it (and the manifest holds it). */
export interface TableState {
  owner: string;
  rls: boolean;
  force: boolean;
  policies: Record<string, PolicyState>;
  /** grantee (PUBLIC for every role) → privileges, ` WITH GRANT OPTION` appended when grantable. */
  grants: Record<string, string[]>;
  /** column → grantee → privileges. */
  column_grants: Record<string, Record<string, string[]>>;
}

interface DriftRow {
  schema: string;
  table: string;
  recorded: TableState | null;
  live: TableState | null;
}

/** The manifest and the live state of each configured table (null where there is none). */
type DriftRead =
  | { available: true; rows: DriftRow[]; bypassing: Set<string> }
  | { available: false; missing: boolean; user: string };

async function readDrift(db: Queryable, tables: readonly TenantTable[]): Promise<DriftRead> {
  // Roles that bypass row level security (superuser or BYPASSRLS): a grant to one of them is a
  // grant of every tenant's rows. Read here to spare a round trip at start-up.
  const { rows: [access] } = await db.query(
    // Found in the catalog, not by name lookup (to_regclass needs USAGE on the schema); the
    // privileges asked only of what exists (CASE: has_*_privilege raises on a missing object).
    `SELECT current_user::text AS current_user, x.manifest IS NOT NULL AS manifest, x.fn IS NOT NULL AS state_function, x.bypassing,
            CASE WHEN x.manifest IS NULL OR x.fn IS NULL THEN false
                 ELSE pg_catalog.has_schema_privilege(x.nsp, 'USAGE') AND pg_catalog.has_table_privilege(x.manifest, 'SELECT')
                      AND pg_catalog.has_function_privilege(x.fn, 'EXECUTE') END AS readable
       FROM (SELECT n.oid AS nsp,
                    (SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relnamespace = n.oid AND c.relname = 'policy_manifest' AND c.relkind = 'r') AS manifest,
                    (SELECT p.oid FROM pg_catalog.pg_proc p
                      WHERE p.pronamespace = n.oid AND p.proname = 'table_state' AND pg_catalog.oidvectortypes(p.proargtypes) = 'regclass') AS fn,
                    ARRAY(SELECT r.rolname::text FROM pg_catalog.pg_roles r WHERE r.rolsuper OR r.rolbypassrls) AS bypassing
               FROM (SELECT) AS one LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = 'linkbay') AS x`,
  );
  if (!access.manifest || !access.state_function || !access.readable) {
    return { available: false, missing: !access.manifest || !access.state_function, user: access.current_user };
  }
  const { rows } = await db.query(
    `SELECT k.schema, k.name AS table, m.state AS recorded,
            CASE WHEN c.oid IS NULL THEN NULL ELSE linkbay.table_state(c.oid) END AS live
       FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(schema, name, position)
       LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = k.schema
       LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = k.name
       LEFT JOIN linkbay.policy_manifest m ON m.table_name = format('%I.%I', k.schema, k.name)
      ORDER BY k.position`,
    [tables.map((t) => t.schema), tables.map((t) => t.table)],
  );
  const state = (value: Partial<TableState> | null): TableState | null =>
    value === null ? null : { owner: '', rls: false, force: false, ...value, policies: value.policies ?? {}, grants: value.grants ?? {}, column_grants: value.column_grants ?? {} };
  return {
    available: true,
    // Every key present even in a state recorded by another version of table_state.
    rows: rows.map((row: DriftRow) => ({ ...row, recorded: state(row.recorded), live: state(row.live) })),
    bypassing: new Set(access.bypassing),
  };
}

export async function driftFindings(db: Queryable, config: TenancyConfig): Promise<Finding[]> {
  if (config.tables.length === 0) return [];
  const read = await readDrift(db, config.tables);
  if (!read.available) {
    const why = read.missing
      ? "missing: the library's migrations (sql/00004-policy-manifest.sql) were not applied to this database"
      : `${read.user} may not read it (or call linkbay.table_state)`;
    const who = quoteIdent(read.user);
    return [{
      code: 'LBMT_DRIFT_NO_MANIFEST',
      severity: 'info',
      object: 'table linkbay.policy_manifest',
      message: `${why}: what changed on the tenant tables since their migrations cannot be checked`,
      fix: read.missing
        ? "apply the library's migrations (linkbay-multitenant generate without --no-registry), then the generated manifest-<schema>-<table> migrations"
        : `GRANT USAGE ON SCHEMA linkbay TO ${who};\nGRANT SELECT ON linkbay.policy_manifest TO ${who};\nGRANT EXECUTE ON FUNCTION linkbay.table_state(regclass) TO ${who};\n-- or run doctor as the admin role or a superuser`,
    }];
  }
  return read.rows.flatMap((row) => tableDrift(config, row, read.bypassing));
}

const COMMANDS: Record<string, string> = { r: 'SELECT', a: 'INSERT', w: 'UPDATE', d: 'DELETE', '*': 'ALL' };

/**
 * Privileges row level security does not govern: TRUNCATE empties every tenant's rows (PITFALLS 5),
 * TRIGGER lets the grantee attach a trigger that sees every tenant's writes. Granted to anyone, they cross tenants.
 */
const BEYOND_RLS: Record<string, string> = {
  TRUNCATE: "TRUNCATE is not subject to RLS: it empties every tenant's rows",
  TRIGGER: "TRIGGER lets it attach a trigger that sees every tenant's writes",
};

/** The CREATE POLICY that restores a recorded policy. */
function createPolicySql(table: string, name: string, p: PolicyState): string {
  const roles = p.roles.map((r) => (r === 'PUBLIC' ? 'PUBLIC' : quoteIdent(r))).join(', ');
  return `CREATE POLICY ${quoteIdent(name)} ON ${table} AS ${p.permissive ? 'PERMISSIVE' : 'RESTRICTIVE'} FOR ${COMMANDS[p.cmd] ?? p.cmd} TO ${roles}` +
    (p.using === null ? '' : `\n  USING (${p.using})`) + (p.check === null ? '' : `\n  WITH CHECK (${p.check})`) + ';';
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

/** What differs between two definitions of a policy, in words; empty when they are alike. */
function policyChanges(was: PolicyState, now: PolicyState): string[] {
  const changes: string[] = [];
  const expr = (e: string | null) => (e === null ? 'none' : `(${e})`);
  if (was.permissive !== now.permissive) changes.push(`${was.permissive ? 'PERMISSIVE' : 'RESTRICTIVE'} became ${now.permissive ? 'PERMISSIVE' : 'RESTRICTIVE'}`);
  if (was.cmd !== now.cmd) changes.push(`FOR ${COMMANDS[was.cmd] ?? was.cmd} became FOR ${COMMANDS[now.cmd] ?? now.cmd}`);
  if (!sameSet(was.roles, now.roles)) changes.push(`TO ${was.roles.join(', ')} became TO ${now.roles.join(', ')}`);
  if (was.using !== now.using) changes.push(`USING ${expr(was.using)} became ${expr(now.using)}`);
  if (was.check !== now.check) changes.push(`WITH CHECK ${expr(was.check)} became ${expr(now.check)}`);
  return changes;
}

/** Privileges of `now` missing from `was`, per grantee. */
function added(now: Record<string, string[]>, was: Record<string, string[]>): Array<[string, string[]]> {
  return Object.entries(now).map(([grantee, privileges]) => [grantee, privileges.filter((p) => !(was[grantee] ?? []).includes(p))] as [string, string[]]).filter(([, p]) => p.length > 0);
}

function grantee(name: string): string {
  return name === 'PUBLIC' ? 'PUBLIC' : quoteIdent(name);
}

/** REVOKE of privileges nobody migrated; `SELECT WITH GRANT OPTION` over a recorded `SELECT` revokes only the option. */
function revokeSql(table: string, who: string, extra: string[], recorded: string[], column?: string): string {
  const on = column ? ` (${quoteIdent(column)})` : '';
  const statements: string[] = [];
  const plain = extra.filter((p) => !p.endsWith(' WITH GRANT OPTION') || !recorded.includes(p.slice(0, -' WITH GRANT OPTION'.length)));
  const optionOnly = extra.filter((p) => !plain.includes(p)).map((p) => p.slice(0, -' WITH GRANT OPTION'.length));
  const base = (p: string) => p.replace(/ WITH GRANT OPTION$/, '');
  if (plain.length) statements.push(`REVOKE ${[...new Set(plain.map(base))].map((p) => p + on).join(', ')} ON ${table} FROM ${grantee(who)};`);
  if (optionOnly.length) statements.push(`REVOKE GRANT OPTION FOR ${optionOnly.map((p) => p + on).join(', ')} ON ${table} FROM ${grantee(who)};`);
  return statements.join('\n');
}

function grantSql(table: string, who: string, missing: string[], column?: string): string {
  const on = column ? ` (${quoteIdent(column)})` : '';
  const withOption = missing.filter((p) => p.endsWith(' WITH GRANT OPTION')).map((p) => p.slice(0, -' WITH GRANT OPTION'.length) + on);
  const plain = missing.filter((p) => !p.endsWith(' WITH GRANT OPTION')).map((p) => p + on);
  return [
    plain.length ? `GRANT ${plain.join(', ')} ON ${table} TO ${grantee(who)};` : '',
    withOption.length ? `GRANT ${withOption.join(', ')} ON ${table} TO ${grantee(who)} WITH GRANT OPTION;` : '',
  ].filter(Boolean).join('\n');
}

export function tableDrift(config: TenancyConfig, row: DriftRow, bypassing: ReadonlySet<string>): Finding[] {
  const object = `${row.schema}.${row.table}`;
  const table = qualifiedName(row);
  const record = `SELECT linkbay.record_table_state(${quoteLiteral(table)});`;
  const keep = `-- or, if the change is meant to stay, record it: ${record}`;
  const findings: Finding[] = [];
  const add = (code: string, severity: Severity, message: string, fix: string) => findings.push({ code, severity, object, message, fix });
  // A missing table is LBMT_TABLE_MISSING of the catalog checks.
  if (row.live === null) return findings;
  if (row.recorded === null) {
    add('LBMT_DRIFT_UNRECORDED', 'info', 'no manifest entry: its policies, grants and RLS flags as migrated were never recorded, so their drift cannot be checked',
      `apply the generated manifest-${`${row.schema}-${row.table}`.replaceAll('_', '-')} migration (linkbay-multitenant generate), or, once the table is as it should be: ${record}`);
    return findings;
  }
  const { recorded: was, live: now } = row;
  if (was.rls && !now.rls) add('LBMT_DRIFT_RLS_DISABLED', 'error', 'row level security was enabled by the migrations and has been disabled since: no policy applies', `ALTER TABLE ${table} ENABLE ROW LEVEL SECURITY;`);
  if (was.force && !now.force) add('LBMT_DRIFT_FORCE_REMOVED', 'error', `FORCE ROW LEVEL SECURITY was set by the migrations and has been removed since: the owner (${now.owner}) bypasses every policy`, `ALTER TABLE ${table} FORCE ROW LEVEL SECURITY;`);
  if (was.owner !== now.owner) add('LBMT_DRIFT_OWNER_CHANGED', 'warning', `owned by ${now.owner}, migrated as owned by ${was.owner}: the owner may disable RLS and drop policies`, `ALTER TABLE ${table} OWNER TO ${quoteIdent(was.owner)};\n${keep}`);

  const dropped = Object.keys(was.policies).filter((name) => !(name in now.policies));
  const extra = Object.keys(now.policies).filter((name) => !(name in was.policies));
  for (const name of [...dropped]) {
    const renamed = extra.find((other) => policyChanges(was.policies[name]!, now.policies[other]!).length === 0);
    if (renamed === undefined) continue;
    dropped.splice(dropped.indexOf(name), 1);
    extra.splice(extra.indexOf(renamed), 1);
    add('LBMT_DRIFT_POLICY_RENAMED', 'warning', `policy ${name} is there as ${renamed}, unchanged otherwise: the library and doctor know its policies by name`, `ALTER POLICY ${quoteIdent(renamed)} ON ${table} RENAME TO ${quoteIdent(name)};\n${keep}`);
  }
  for (const name of dropped) {
    const policy = was.policies[name]!;
    add('LBMT_DRIFT_POLICY_DROPPED', policy.permissive ? 'warning' : 'error', policy.permissive
      ? `the migrated permissive policy ${name} is gone: the roles it let in see fewer rows (fails closed)`
      : `the migrated RESTRICTIVE policy ${name} is gone: what it kept out is no longer kept out`,
      `${createPolicySql(table, name, policy)}\n${keep}`);
  }
  for (const name of Object.keys(was.policies).filter((n) => n in now.policies)) {
    const changes = policyChanges(was.policies[name]!, now.policies[name]!);
    if (changes.length === 0) continue;
    add('LBMT_DRIFT_POLICY_CHANGED', 'error', `policy ${name} is not as migrated: ${changes.join('; ')}`,
      `DROP POLICY ${quoteIdent(name)} ON ${table};\n${createPolicySql(table, name, was.policies[name]!)}\n${keep}`);
  }
  for (const name of extra) {
    const policy = now.policies[name]!;
    const citus = config.engine === 'citus';
    const severity: Severity = !policy.permissive ? 'info' : citus ? 'error' : 'warning';
    const why = !policy.permissive
      ? 'it is RESTRICTIVE, so it can only narrow access'
      : citus
        ? 'it is permissive, and on Citus the isolation policy is permissive too: the shards OR them'
        : `it is permissive: it lets ${policy.roles.join(', ')} see rows (${COMMANDS[policy.cmd] ?? policy.cmd}); the restrictive isolation policy still applies`;
    add('LBMT_DRIFT_POLICY_ADDED', severity, `policy ${name} was not created by the migrations; ${why}`, `DROP POLICY ${quoteIdent(name)} ON ${table};\n${keep}`);
  }

  const widened = (grants: Array<[string, string[]]>, recorded: Record<string, string[]>, column?: string) => {
    for (const [who, privileges] of grants) {
      const everyTenant = who === 'PUBLIC' || bypassing.has(who);
      const beyond = privileges.map((p) => BEYOND_RLS[p.replace(/ WITH GRANT OPTION$/, '')]).filter(Boolean);
      const what = `${privileges.join(', ')}${column ? ` on column ${column}` : ''}`;
      const why = everyTenant
        ? `${who === 'PUBLIC' ? 'every role, including any that bypasses RLS,' : `${who} bypasses RLS and`} may now read or write every tenant's rows`
        : beyond.length ? [...new Set(beyond)].join('; ') : 'RLS still applies to it';
      add('LBMT_DRIFT_GRANT_WIDENED', everyTenant || beyond.length ? 'error' : 'warning', `${who} was granted ${what}, which the migrations did not grant: ${why}`,
        `${revokeSql(table, who, privileges, recorded[who] ?? [], column)}\n${keep}`);
    }
  };
  const narrowed = (grants: Array<[string, string[]]>, column?: string) => {
    for (const [who, privileges] of grants) {
      add('LBMT_DRIFT_GRANT_NARROWED', 'warning', `${who} no longer has ${privileges.join(', ')}${column ? ` on column ${column}` : ''}, which the migrations granted: queries that need it fail`,
        `${grantSql(table, who, privileges, column)}\n${keep}`);
    }
  };
  // The owner's own privileges come with ownership (LBMT_DRIFT_OWNER_CHANGED reports a new owner).
  const notOwner = (grants: Array<[string, string[]]>, owner: string) => grants.filter(([who]) => who !== owner);
  widened(notOwner(added(now.grants, was.grants), now.owner), was.grants);
  narrowed(was.owner === now.owner ? added(was.grants, now.grants) : notOwner(added(was.grants, now.grants), was.owner));
  for (const column of new Set([...Object.keys(was.column_grants), ...Object.keys(now.column_grants)])) {
    const before = was.column_grants[column] ?? {};
    const after = now.column_grants[column] ?? {};
    widened(added(after, before), before, column);
    narrowed(added(before, after), column);
  }
  return findings;
}
