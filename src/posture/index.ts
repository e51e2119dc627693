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
 * | LBMT_ROLE_OWNS_SCHEMA             | error           | the runtime role owns a tenant table's schema (or the database, so public): it may drop the table |
 * | LBMT_ROLE_CAN_ESCALATE            | error           | the runtime role is a member of a superuser or BYPASSRLS role, or of pg_read/write_server_files, pg_execute_server_program |
 * | LBMT_TENANT_SETTING_DEFAULT       | error           | the runtime role's sessions start with a tenant set (ALTER ROLE/DATABASE ... SET) |
 * | LBMT_PRIVILEGE_BEYOND_RLS         | error           | the runtime role may TRUNCATE a tenant table, or add triggers to it   |
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
 * | LBMT_SECURITY_DEFINER_FUNCTION    | warning / error | a SECURITY DEFINER function mentions a tenant table; error when its owner bypasses RLS and the runtime role may call it |
 * | LBMT_RULE_OVER_TENANT_TABLE       | error / warning | a rule on a tenant table, or using one as an owner that bypasses RLS (warning otherwise) |
 * | LBMT_FUNCTION_SETS_SESSION_TENANT | error           | a function sets the tenant setting for the session (set_config(.., false), SET without LOCAL) |
 * | LBMT_SECURITY_DEFINER_SEARCH_PATH | warning         | ... and does not pin search_path                                      |
 * | LBMT_UNIQUE_WITHOUT_TENANT        | warning         | a unique index/constraint leaves out the tenant column                |
 * | LBMT_FOREIGN_KEY_WITHOUT_TENANT   | warning         | a foreign key to a tenant table does not match on the tenant column   |
 * | LBMT_SERVER_VULNERABLE            | warning         | the server predates the fix of an RLS CVE                             |
 * | LBMT_SERVER_UNSUPPORTED           | warning         | the server's major version is out of support                          |
 * | LBMT_CITUS_*                      | error / warning | on a Citus cluster, or engine "citus": see src/citus/posture.ts       |
 * | LBMT_DRIFT_*                      | error / warning / info | a tenant table changed since its migrations: see drift.ts      |
 *
 * Codes are stable: never renamed or reused once retired.
 * A FOR ALL policy without WITH CHECK applies its USING expression to new rows too (CREATE POLICY
 * docs; test/posture.test.ts proves the write is refused), hence a warning and not an error.
 * Drift since the migrations (the manifest they recorded against the live catalog): drift.ts.
 * Classification of every table of the application's schemas: classification.ts.
 * With `performance: true` (doctor --perf), the findings of performance.ts too.
 * The catalog queries are in queries.ts, the findings per object in findings.ts
 * (how policies are recognised is explained there), those about the server release in
 * server.ts.
 */
import { quoteIdent, type TenancyConfig, type TenantTable } from '../config.js';
import { PostureError } from '../errors.js';
import {
  definerFindings,
  dependentFindings,
  foreignKeyFindings,
  partitionFindings,
  roleFindings,
  ruleFindings,
  sessionSettingFindings,
  tableFindings,
  uniqueFindings,
} from './findings.js';
import * as q from './queries.js';
import { printable } from '../printable.js';
import { serverFindings } from './server.js';
import { checkPolicyPerformance } from './performance.js';
import { classificationFindings } from './classification.js';
import { driftFindings } from './drift.js';
import { probeTenantIsolation } from '../testing/live-probes.js';
import type { TenantPool } from '../pool.js';
import { citusPosture } from '../citus/posture.js';

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
  /**
   * Also EXPLAIN a tenant-scoped query per tenant table as the runtime role and read the policies'
   * functions (performance.ts: `doctor --perf`). Needs a pool (it uses one connection, in
   * transactions that are rolled back). Default false.
   */
  performance?: boolean;
  /**
   * Also run the live isolation probes (src/testing/live-probes.ts: `doctor --probe`): two synthetic
   * tenants per table, every way of reaching the other's rows, all rolled back. Needs a pool of a
   * superuser. Default false.
   */
  probe?: boolean;
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
  const findings: Finding[] = [...roleFindings(await q.readRole(pool, runtimeRole, config.setting), runtimeRole, config.setting, server.versionNum)];
  if (config.tables.length === 0) {
    findings.push({ code: 'LBMT_NO_TENANT_TABLES', severity: 'warning', object: 'config', message: 'the config lists no tenant table, so no table was checked', fix: 'add your tenant tables to `tables` in the config' });
  }
  const tables = config.tables.length ? await q.readTables(pool, config.tables, runtimeRole) : [];
  const present = tables.filter((t): t is q.TableRow & { relid: number } => t.relid !== null);
  const byRelid = new Map(present.map((t) => [t.relid, t.table]));
  const relids = [...byRelid.keys()];
  const partitions = relids.length ? (await q.readPartitions(pool, relids, runtimeRole)).filter((p) => !byRelid.has(p.relid)) : [];
  const policies = relids.length ? await q.readPolicies(pool, [...relids, ...partitions.map((p) => p.relid)], runtimeRole) : [];
  const policiesOf = (relid: number) => policies.filter((p) => p.relid === relid);

  for (const row of tables) findings.push(...tableFindings(config, row, row.relid === null ? [] : policiesOf(row.relid), runtimeRole));
  for (const partition of partitions) {
    const table = byRelid.get(partition.root)!;
    findings.push(...partitionFindings(config, table, partition, policiesOf(partition.relid), runtimeRole));
  }
  findings.push(...(await driftFindings(pool, config)));
  if (relids.length) {
    // One query at a time: at start-up this runs on the application's pool, and should hold one
    // connection, not as many as there are checks.
    // Views, rules and functions reaching a partition (or child) directly reach tenant rows as well.
    const reachable = new Map<number, TenantTable>(byRelid);
    for (const p of partitions) reachable.set(p.relid, { schema: p.schema, table: p.table, tenantColumn: byRelid.get(p.root)!.tenantColumn });
    const reachableIds = [...reachable.keys()];
    findings.push(...dependentFindings(await q.readDependents(pool, reachableIds), reachable, server.versionNum, runtimeRole));
    findings.push(...ruleFindings(await q.readRules(pool, reachableIds), reachable));
    findings.push(...definerFindings(await q.readDefinerFunctions(pool, runtimeRole), [...reachable.values()], runtimeRole));
    findings.push(...sessionSettingFindings(await q.readFunctionsNamingSetting(pool, config.setting), config.setting));
    findings.push(...uniqueFindings(await q.readUniqueIndexes(pool, relids), byRelid));
    findings.push(...foreignKeyFindings(await q.readForeignKeys(pool, relids), byRelid));
  }
  // Citus (src/citus/posture.ts): the shards' policies, distribution, role setting, engine mismatch.
  const citus = await citusPosture(pool, config, runtimeRole, present, policies);
  for (let i = findings.length - 1; i >= 0; i -= 1) if (citus.supersedes.has(findings[i]!.code)) findings.splice(i, 1);
  findings.push(...citus.findings);
  findings.push(...(await classificationFindings(pool, config, runtimeRole)));
  findings.push(...serverFindings(server.versionNum, server.version));
  const planClasses = await q.readPlanClasses(pool, runtimeRole);
  if (!planClasses.executable) {
    findings.push({
      code: 'LBMT_PLAN_CLASSES_UNAVAILABLE',
      severity: 'info',
      object: 'function linkbay.planner_tenants()',
      message: planClasses.exists
        ? `${runtimeRole} may not call it: prepared statements are planned at each execution (correct, slower)`
        : 'missing: prepared statements are planned at each execution (correct, slower)',
      fix: planClasses.exists
        ? `GRANT EXECUTE ON FUNCTION linkbay.planner_tenants() TO ${quoteIdent(runtimeRole)};`
        : "apply the library's migrations (linkbay-multitenant generate) as a role that can act as the admin role",
    });
  }
  if (options.performance) {
    const withConnect = pool as q.Queryable & Partial<TenantPool>;
    if (typeof withConnect.connect !== 'function') throw new TypeError('`performance` needs a pool (something with connect()), not a single client');
    findings.push(...(await checkPolicyPerformance(withConnect as TenantPool, config, runtimeRole)));
  }
  if (options.probe) {
    const withConnect = pool as q.Queryable & Partial<TenantPool>;
    if (typeof withConnect.connect !== 'function') throw new TypeError('`probe` needs a pool (something with connect()), not a single client');
    const probed = await probeTenantIsolation({ pool: withConnect as TenantPool, config, runtimeRole });
    for (const breach of probed.breaches) {
      findings.push({ code: 'LBMT_PROBE_BREACH', severity: 'error', object: breach.split(':')[0]!, message: breach, fix: 'see the catalog findings for this table; the probe saw it happen' });
    }
    // Asked for and not run: nothing was proven live, and saying so only as an info passed CI.
    if (!probed.ran) {
      findings.push({ code: 'LBMT_PROBE_NOT_RUN', severity: 'error', object: 'live probes', message: probed.notes[0] ?? 'the live probes could not run', fix: 'run doctor --probe with a superuser --database-url (the probes roll back everything they write)' });
    } else {
      for (const note of probed.notes) findings.push({ code: 'LBMT_PROBE_SKIPPED', severity: 'info', object: note.split(':')[0]!, message: note, fix: 'seed one row in the table, or run doctor as a superuser' });
    }
  }
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

/**
 * A plain-text report for people: one block per finding, errors first, and a summary line. Names
 * from the database are shown with control characters escaped (printable.ts).
 */
export function formatPostureReport(report: PostureReport): string {
  const safe = (f: Finding): Finding => ({ ...f, code: printable(f.code), object: printable(f.object), message: printable(f.message), fix: f.fix.split('\n').map(printable).join('\n') });
  const findings = report.findings.map(safe).sort((a, b) => SEVERITY_ORDER.indexOf(a.severity) - SEVERITY_ORDER.indexOf(b.severity));
  const width = (pick: (f: Finding) => string, title: string) => Math.max(title.length, ...findings.map((f) => pick(f).length));
  const severityWidth = width((f) => f.severity, 'SEVERITY');
  const codeWidth = width((f) => f.code, 'CODE');
  const indent = ' '.repeat(severityWidth + codeWidth + 4);
  const lines = [`PostgreSQL ${printable(report.serverVersion)}, runtime role ${printable(report.runtimeRole)}`, ''];
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
