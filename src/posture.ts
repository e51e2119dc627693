/**
 * `doctor`: reads pg_catalog and reports what breaks tenant isolation (PITFALLS.md 1–5, 12, 13, 15,
 * 20). It only reads the catalog, so it runs as the application role at start-up
 * (`assertPosture(appPool, config)`) as well as a superuser in the CLI.
 *
 * | code                              | severity        | what                                                                  |
 * |-----------------------------------|-----------------|-----------------------------------------------------------------------|
 * | LBMT_ROLE_MISSING                 | error           | the runtime role does not exist                                       |
 * | LBMT_ROLE_SUPERUSER               | error           | the runtime role is superuser: it bypasses RLS                        |
 * | LBMT_ROLE_BYPASSRLS               | error           | the runtime role has BYPASSRLS                                        |
 * | LBMT_ROLE_OWNS_TABLE              | error           | the runtime role owns a tenant table (or is a member of its owner)    |
 * | LBMT_ROLE_CAN_ESCALATE            | error           | the runtime role is a member of a superuser or BYPASSRLS role         |
 * | LBMT_CONNECTED_AS_OTHER_ROLE      | info            | the connection's current_user is not the runtime role checked         |
 * | LBMT_NO_TENANT_TABLES             | warning         | the config lists no tenant table: nothing was checked                 |
 * | LBMT_TABLE_MISSING                | error           | a configured tenant table does not exist                              |
 * | LBMT_TENANT_COLUMN_MISSING        | error           | the tenant column does not exist                                      |
 * | LBMT_TENANT_COLUMN_TYPE           | error           | the tenant column's type is not config.tenantIdType                   |
 * | LBMT_TENANT_COLUMN_NULLABLE       | warning         | the tenant column is nullable                                         |
 * | LBMT_RLS_DISABLED                 | error           | row level security is not enabled                                     |
 * | LBMT_RLS_NOT_FORCED               | error           | row level security is not forced (the owner bypasses it)              |
 * | LBMT_ISOLATION_POLICY_MISSING     | error           | no RESTRICTIVE FOR ALL policy compares the tenant column to the setting |
 * | LBMT_ISOLATION_POLICY_PERMISSIVE  | error           | the isolation policy is PERMISSIVE: OR-ed with USING (true)           |
 * | LBMT_ISOLATION_WITH_CHECK_WEAK    | error           | its WITH CHECK does not compare the tenant column to the setting      |
 * | LBMT_ISOLATION_WITH_CHECK_MISSING | warning         | it has no explicit WITH CHECK (FOR ALL reuses USING, see below)       |
 * | LBMT_EXTRA_PERMISSIVE_POLICY      | warning / error | a permissive policy besides lbmt_tenant_access; error without isolation |
 * | LBMT_NO_PERMISSIVE_POLICY         | warning         | no permissive policy applies to the runtime role: it sees nothing     |
 * | LBMT_TENANT_INDEX_MISSING         | warning         | no index has the tenant column first                                  |
 * | LBMT_PARTITION_UNPROTECTED        | error           | a partition/child lacks RLS, FORCE or the isolation policy            |
 * | LBMT_VIEW_DEFINER_RIGHTS          | error / warning | a view over a tenant table runs as its owner (warning before PG 15)   |
 * | LBMT_MATVIEW_OVER_TENANT_TABLE    | error           | a materialized view holds tenant rows without RLS                     |
 * | LBMT_SECURITY_DEFINER_FUNCTION    | warning         | a SECURITY DEFINER function mentions a tenant table                   |
 * | LBMT_SECURITY_DEFINER_SEARCH_PATH | warning         | ... and does not pin search_path                                      |
 * | LBMT_UNIQUE_WITHOUT_TENANT        | warning         | a unique index/constraint leaves out the tenant column                |
 * | LBMT_FOREIGN_KEY_WITHOUT_TENANT   | warning         | a foreign key to a tenant table does not match on the tenant column   |
 * | LBMT_SERVER_VULNERABLE            | warning         | the server predates the fix of an RLS CVE                             |
 * | LBMT_SERVER_UNSUPPORTED           | warning         | the server's major version is out of support                          |
 *
 * Codes are stable: never renamed or reused once retired.
 * A FOR ALL policy without WITH CHECK applies its USING expression to new rows too (CREATE POLICY
 * docs; test/posture.test.ts proves the write is refused), hence a warning and not an error.
 * Policies are recognised by their text (pg_get_expr): the tenant column and
 * `current_setting('<setting>'` must both appear, and no OR (which could widen the match).
 */
import { qualifiedName, quoteIdent, type TenancyConfig, type TenantTable } from './config.js';
import { PostureError } from './errors.js';
import { ACCESS_POLICY, ISOLATION_POLICY, currentTenantExpression } from './policies.js';
import * as q from './posture-queries.js';

export type Severity = 'error' | 'warning' | 'info';

export interface Finding {
  /** Stable code, `LBMT_...`; see the table above. */
  code: string;
  severity: Severity;
  /** What the finding is about: `role app_user`, `public.orders`, `view public.v`, ... */
  object: string;
  message: string;
  /** Suggested fix, SQL when possible. */
  fix: string;
}

export interface PostureReport {
  /** No finding of severity `error`. */
  ok: boolean;
  serverVersion: string;
  runtimeRole: string;
  findings: Finding[];
}

export interface PostureOptions {
  /** The role the application runs as. Default: `config.roles.app`. */
  runtimeRole?: string;
}

/**
 * Reads the catalog and reports what breaks (errors) or weakens (warnings) tenant isolation.
 *
 * @example
 * const report = await checkPosture(adminPool, tenancy);
 * if (!report.ok) console.error(formatPostureReport(report));
 */
export async function checkPosture(pool: q.Queryable, config: TenancyConfig, options: PostureOptions = {}): Promise<PostureReport> {
  const runtimeRole = options.runtimeRole ?? config.roles.app;
  const server = await q.readServer(pool);
  const findings: Finding[] = [...roleFindings(await q.readRole(pool, runtimeRole), runtimeRole)];
  if (config.tables.length === 0) {
    findings.push({ code: 'LBMT_NO_TENANT_TABLES', severity: 'warning', object: 'config', message: 'the config lists no tenant table, so no table was checked', fix: 'add your tenant tables to `tables` in the config' });
  }
  const tables = config.tables.length ? await q.readTables(pool, config.tables, runtimeRole) : [];
  const present = tables.filter((t): t is q.TableRow & { relid: number } => t.relid !== null);
  const byRelid = new Map(present.map((t) => [t.relid, t.table]));
  const relids = [...byRelid.keys()];
  const partitions = relids.length ? (await q.readPartitions(pool, relids)).filter((p) => !byRelid.has(p.relid)) : [];
  const policies = relids.length ? await q.readPolicies(pool, [...relids, ...partitions.map((p) => p.relid)], runtimeRole) : [];
  const policiesOf = (relid: number) => policies.filter((p) => p.relid === relid);

  for (const row of tables) findings.push(...tableFindings(config, row, row.relid === null ? [] : policiesOf(row.relid), runtimeRole));
  for (const partition of partitions) {
    const table = byRelid.get(partition.root)!;
    findings.push(...partitionFindings(config, table, partition, policiesOf(partition.relid)));
  }
  if (relids.length) {
    // One query at a time: at start-up this runs on the application's pool, and should hold one
    // connection, not as many as there are checks.
    findings.push(...dependentFindings(await q.readDependents(pool, relids), byRelid, server.versionNum, runtimeRole));
    findings.push(...definerFindings(await q.readDefinerFunctions(pool), present.map((t) => t.table)));
    findings.push(...uniqueFindings(await q.readUniqueIndexes(pool, relids), byRelid));
    findings.push(...foreignKeyFindings(await q.readForeignKeys(pool, relids), byRelid));
  }
  findings.push(...serverFindings(server.versionNum, server.version));
  return { ok: !findings.some((f) => f.severity === 'error'), serverVersion: server.version, runtimeRole, findings };
}

/**
 * `checkPosture`, throwing PostureError (with the error findings) when isolation is broken.
 * Call it at application start-up with the application's own pool.
 *
 * @example
 * await assertPosture(appPool, tenancy); // refuses to start on a database that leaks
 */
export async function assertPosture(pool: q.Queryable, config: TenancyConfig, options: PostureOptions = {}): Promise<PostureReport> {
  const report = await checkPosture(pool, config, options);
  const errors = report.findings.filter((f) => f.severity === 'error');
  if (errors.length) {
    const lines = errors.map((f) => `  ${f.code} ${f.object}: ${f.message}`);
    throw new PostureError(`the database posture breaks tenant isolation for role ${report.runtimeRole}:\n${lines.join('\n')}`, errors);
  }
  return report;
}

const SEVERITY_ORDER: Severity[] = ['error', 'warning', 'info'];

/** A plain-text report for people: one block per finding, errors first, and a summary line. */
export function formatPostureReport(report: PostureReport): string {
  const findings = [...report.findings].sort((a, b) => SEVERITY_ORDER.indexOf(a.severity) - SEVERITY_ORDER.indexOf(b.severity));
  const width = (pick: (f: Finding) => string, title: string) => Math.max(title.length, ...findings.map((f) => pick(f).length));
  const severityWidth = width((f) => f.severity, 'SEVERITY');
  const codeWidth = width((f) => f.code, 'CODE');
  const indent = ' '.repeat(severityWidth + codeWidth + 4);
  const lines = [`PostgreSQL ${report.serverVersion}, runtime role ${report.runtimeRole}`, ''];
  if (findings.length) {
    lines.push(`${'SEVERITY'.padEnd(severityWidth)}  ${'CODE'.padEnd(codeWidth)}  OBJECT`);
    for (const f of findings) {
      lines.push(`${f.severity.padEnd(severityWidth)}  ${f.code.padEnd(codeWidth)}  ${f.object}`);
      lines.push(`${indent}${f.message}`);
      lines.push(...f.fix.split('\n').map((line, i) => `${indent}${i === 0 ? 'fix: ' : '     '}${line}`));
    }
    lines.push('');
  } else lines.push('No findings.', '');
  const count = (severity: Severity) => findings.filter((f) => f.severity === severity).length;
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  lines.push(
    `${plural(count('error'), 'error')}, ${plural(count('warning'), 'warning')}, ${count('info')} info: ` +
      (report.ok ? 'nothing found that breaks tenant isolation' : 'tenant isolation is BROKEN'),
  );
  return lines.join('\n');
}

function roleFindings(role: q.RoleRow, name: string): Finding[] {
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
  for (const target of role.escalations) {
    add('LBMT_ROLE_CAN_ESCALATE', 'error', `the runtime role is a member of ${target}, which bypasses RLS: SET ROLE ${target} escapes isolation`, `REVOKE ${quoteIdent(target)} FROM ${quoteIdent(name)};`);
  }
  return findings;
}

/** The tenant column compared to the setting, with no OR that could widen the match. */
function isTenantCheck(expression: string | null, column: string, setting: string): boolean {
  if (!expression) return false;
  const literalsBlanked = expression.replace(/'(?:[^']|'')*'/g, "''");
  const columnRef = new RegExp(`(^|[^A-Za-z0-9_$"])${escapeRegExp(column)}($|[^A-Za-z0-9_$"])`);
  const settingRef = new RegExp(`current_setting\\('${escapeRegExp(setting)}'`);
  return settingRef.test(expression) && columnRef.test(literalsBlanked) && !/\bOR\b/i.test(literalsBlanked);
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

function tableFindings(config: TenancyConfig, row: q.TableRow, policies: q.PolicyRow[], runtimeRole: string): Finding[] {
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
  if (!row.hasColumn) add('LBMT_TENANT_COLUMN_MISSING', 'error', `the tenant column ${t.tenantColumn} does not exist`, `ALTER TABLE ${sql} ADD COLUMN ${column} ${config.tenantIdType} NOT NULL; -- or correct tenantColumn in the config`);
  else {
    if (row.columnType !== config.tenantIdType) add('LBMT_TENANT_COLUMN_TYPE', 'error', `the tenant column ${t.tenantColumn} is ${row.columnType}, the config says ${config.tenantIdType}`, `ALTER TABLE ${sql} ALTER COLUMN ${column} TYPE ${config.tenantIdType} USING ${column}::${config.tenantIdType}; -- or correct tenantIdType`);
    if (!row.notNull) add('LBMT_TENANT_COLUMN_NULLABLE', 'warning', `the tenant column ${t.tenantColumn} is nullable: rows without a tenant belong to nobody and are visible to no tenant`, `ALTER TABLE ${sql} ALTER COLUMN ${column} SET NOT NULL;`);
    if (!row.tenantIndex) add('LBMT_TENANT_INDEX_MISSING', 'warning', `no index has ${t.tenantColumn} as its first column: every query filters the tenant row by row`, `CREATE INDEX ON ${sql} (${column});`);
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

function partitionFindings(config: TenancyConfig, parent: TenantTable, partition: q.PartitionRow, policies: q.PolicyRow[]): Finding[] {
  const missing: string[] = [];
  if (!partition.rls) missing.push('RLS is not enabled');
  if (!partition.forced) missing.push('RLS is not forced');
  if (isolationOf(policies, parent.tenantColumn, config.setting).state !== 'ok') missing.push('it has no restrictive isolation policy');
  if (missing.length === 0) return [];
  const sql = qualifiedName(partition);
  const name = `${partition.schema}.${partition.table}`;
  return [{
    code: 'LBMT_PARTITION_UNPROTECTED',
    severity: 'error',
    object: name,
    message: `partition of tenant table ${parent.schema}.${parent.table}: ${missing.join(', ')}; querying the partition directly skips the parent's policies`,
    fix: `ALTER TABLE ${sql} ENABLE ROW LEVEL SECURITY;\nALTER TABLE ${sql} FORCE ROW LEVEL SECURITY;\n${isolationPolicySql(config, sql, parent.tenantColumn)}\n-- or add ${name} to \`tables\` and regenerate`,
  }];
}

function dependentFindings(rows: q.DependentRow[], tables: Map<number, TenantTable>, versionNum: number, runtimeRole: string): Finding[] {
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

function definerFindings(rows: q.DefinerFunctionRow[], tables: TenantTable[]): Finding[] {
  const findings: Finding[] = [];
  for (const row of rows) {
    const mentioned = tables.filter((t) => new RegExp(`(^|[^A-Za-z0-9_$])${escapeRegExp(t.table)}($|[^A-Za-z0-9_$])`, 'i').test(row.body));
    if (mentioned.length === 0) continue;
    const names = mentioned.map((t) => `${t.schema}.${t.table}`).join(', ');
    const object = `function ${row.signature}`;
    findings.push({ code: 'LBMT_SECURITY_DEFINER_FUNCTION', severity: 'warning', object, message: `SECURITY DEFINER function mentions ${names}: it runs as its owner, so RLS applies to the owner, not the caller`, fix: `ALTER FUNCTION ${row.signature} SECURITY INVOKER; -- unless it deliberately crosses tenants` });
    if (!row.pinnedSearchPath) {
      findings.push({ code: 'LBMT_SECURITY_DEFINER_SEARCH_PATH', severity: 'warning', object, message: 'SECURITY DEFINER function without a pinned search_path: a caller can shadow the objects it uses', fix: `ALTER FUNCTION ${row.signature} SET search_path = pg_catalog, pg_temp; -- and schema-qualify the tables it uses` });
    }
  }
  return findings;
}

function uniqueFindings(rows: q.UniqueIndexRow[], tables: Map<number, TenantTable>): Finding[] {
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

function foreignKeyFindings(rows: q.ForeignKeyRow[], tables: Map<number, TenantTable>): Finding[] {
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

/**
 * Row-security CVEs and the first minor release of each affected major that fixes them. Majors
 * not listed and newer than all listed ones were released with the fix; older ones never got it.
 * - CVE-2023-2455 (policies disregard user ID changes after inlining): fixed in 15.3, 14.8, 13.11,
 *   12.15, 11.20 (2023-05-11). https://www.postgresql.org/support/security/CVE-2023-2455/
 * - CVE-2024-10976 (policies below subqueries disregard user ID changes) and CVE-2024-10978
 *   (SET ROLE / SET SESSION AUTHORIZATION reset to the wrong user id): fixed in 17.1, 16.5, 15.9,
 *   14.14, 13.17, 12.21 (2024-11-14; release notes of 16.5: "Ensure cached plans are marked as
 *   dependent on the calling role when RLS applies to a non-top-level table reference ...
 *   (CVE-2024-10976)"). https://www.postgresql.org/support/security/CVE-2024-10976/ and
 *   .../CVE-2024-10978/. The releases a week later (17.2, 16.6, 15.10, 14.15, 13.18, 12.22) only
 *   repaired a regression of those; the minimum for the CVEs is the first set.
 */
const RLS_CVES: ReadonlyArray<{ cve: string; fixed: Readonly<Record<number, number>> }> = [
  { cve: 'CVE-2023-2455', fixed: { 11: 20, 12: 15, 13: 11, 14: 8, 15: 3 } },
  { cve: 'CVE-2024-10976', fixed: { 12: 21, 13: 17, 14: 14, 15: 9, 16: 5, 17: 1 } },
  { cve: 'CVE-2024-10978', fixed: { 12: 21, 13: 17, 14: 14, 15: 9, 16: 5, 17: 1 } },
];

/** Final release date of each major (https://www.postgresql.org/support/versioning/). */
const END_OF_LIFE: Readonly<Record<number, string>> = {
  10: '2022-11-10', 11: '2023-11-09', 12: '2024-11-21', 13: '2025-11-13', 14: '2026-11-12',
  15: '2027-11-11', 16: '2028-11-09', 17: '2029-11-08', 18: '2030-11-14',
};

function serverFindings(versionNum: number, version: string, today = new Date()): Finding[] {
  // server_version_num is MMmmmm since 10 (150004 = 15.4) and MMmmpp before (90624 = 9.6.24).
  const major = versionNum >= 100000 ? Math.floor(versionNum / 10000) : Math.floor(versionNum / 100) / 100;
  const minor = versionNum >= 100000 ? versionNum % 10000 : versionNum % 100;
  const object = `server PostgreSQL ${version}`;
  const findings: Finding[] = [];
  const missing = RLS_CVES.filter(({ fixed }) => {
    const majors = Object.keys(fixed).map(Number);
    if (major in fixed) return minor < fixed[major]!;
    return major < Math.min(...majors);
  });
  if (missing.length) {
    const minimum = missing.map(({ fixed }) => fixed[major]).filter((n) => n !== undefined);
    findings.push({
      code: 'LBMT_SERVER_VULNERABLE',
      severity: 'warning',
      object,
      message: `this release predates the fixes for ${missing.map((c) => c.cve).join(', ')}: row level security can apply the wrong role's policies`,
      fix: minimum.length ? `upgrade to the latest ${major}.x minor release (at least ${major}.${Math.max(...minimum)})` : 'upgrade to a supported major version',
    });
  }
  const endOfLife = END_OF_LIFE[major];
  if (major < 10 || (endOfLife !== undefined && today.toISOString().slice(0, 10) > endOfLife)) {
    findings.push({
      code: 'LBMT_SERVER_UNSUPPORTED',
      severity: 'warning',
      object,
      message: `PostgreSQL ${major} is out of support${endOfLife ? ` since ${endOfLife}` : ''}: security fixes, RLS ones included, no longer ship for it`,
      fix: 'upgrade to a supported major version (https://www.postgresql.org/support/versioning/)',
    });
  }
  return findings;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
