/**
 * doctor on Citus: what breaks tenant isolation on a distributed cluster, read on the shards.
 * checkPosture (src/posture/index.ts) calls `citusPosture` on every database; without Citus and with
 * `engine: 'postgres'` it adds nothing.
 *
 * | code                                      | severity        | what                                                              |
 * |-------------------------------------------|-----------------|-------------------------------------------------------------------|
 * | LBMT_CITUS_ENGINE_MISMATCH                | error           | config.engine and the database disagree (the vanilla schema fails open on Citus) |
 * | LBMT_CITUS_NOT_COORDINATOR                | warning         | connected to a worker: run doctor on the coordinator              |
 * | LBMT_CITUS_TABLE_NOT_DISTRIBUTED          | error / warning | a tenant table is a reference table (error) or not in Citus (warning) |
 * | LBMT_CITUS_POLICY_NOT_ON_DISTRIBUTION_COLUMN | error        | distributed by another column: Citus ignores its tenant-column policy (#7182) |
 * | LBMT_CITUS_NOT_COLOCATED                  | warning         | not colocated with the first tenant table: joins leave the shard  |
 * | LBMT_CITUS_RESTRICTIVE_NOT_ENFORCED       | error           | a RESTRICTIVE policy: Citus creates it PERMISSIVE on the shards   |
 * | LBMT_CITUS_SHARD_POLICY_MISSING           | error           | shards without the isolation policy (USING and WITH CHECK)        |
 * | LBMT_CITUS_EXTRA_PERMISSIVE_POLICY        | error           | shards with another permissive policy: OR-ed with the isolation   |
 * | LBMT_CITUS_SHARD_RLS_DISABLED             | error           | shards without row level security enabled and forced              |
 * | LBMT_CITUS_SHARDS_UNREADABLE              | error           | the shards' policies could not be read                            |
 * | LBMT_CITUS_ROLE_SETTING_MISSING           | error           | no citus.propagate_set_commands = 'local' for the runtime role    |
 * | LBMT_CITUS_SET_TENANT_MISSING             | error           | linkbay.set_tenant(text) is missing                               |
 *
 * Shard findings are one per table and code, with the number of shards. On a Citus-mode schema the
 * coordinator's vanilla LBMT_ISOLATION_POLICY_PERMISSIVE is superseded by the shard checks.
 */
import { qualifiedName, quoteIdent, type TenancyConfig, type TenantTable } from '../config.js';
import { ISOLATION_POLICY } from '../policies.js';
import { isTenantCheck } from '../posture/findings.js';
import type { Finding, Severity } from '../posture/index.js';
import type { Queryable } from '../posture/queries.js';
import * as q from './posture-queries.js';

export interface CitusPosture {
  /** Citus extension version, null without Citus. */
  citusVersion: string | null;
  findings: Finding[];
  /** Vanilla codes that do not apply as such on Citus (the shard checks replace them). */
  supersedes: ReadonlySet<string>;
}

const NOTHING: ReadonlySet<string> = new Set();

/**
 * The Citus findings. `tables` are the configured tenant tables that exist, `policies` the
 * coordinator's policies on them (as checkPosture read them).
 */
export async function citusPosture(
  pool: Queryable,
  config: TenancyConfig,
  runtimeRole: string,
  tables: ReadonlyArray<{ relid: number; table: TenantTable }>,
  policies: ReadonlyArray<{ relid: number; name: string; permissive: boolean }>,
): Promise<CitusPosture> {
  const server = await q.readCitus(pool);
  const findings: Finding[] = [];
  const add = (code: string, severity: Severity, object: string, message: string, fix: string) => findings.push({ code, severity, object, message, fix });
  if (server.version === null) {
    if (config.engine === 'citus') {
      add('LBMT_CITUS_ENGINE_MISMATCH', 'error', 'database', 'the config says engine "citus" but this database has no citus extension', 'connect to the Citus coordinator, or set engine to "postgres" and regenerate');
    }
    return { citusVersion: null, findings, supersedes: NOTHING };
  }
  if (config.engine !== 'citus') {
    add('LBMT_CITUS_ENGINE_MISMATCH', 'error', 'database', `this database runs Citus ${server.version} but the config says engine "postgres": the vanilla tenant setting (set_config) never reaches the workers and the vanilla policies fail open on the shards`, 'set "engine": "citus" in the config, regenerate and apply the migrations (docs/citus.md)');
  }
  if (!server.coordinator) {
    add('LBMT_CITUS_NOT_COORDINATOR', 'warning', 'database', 'connected to a Citus worker: the application and doctor belong on the coordinator, which sees every shard', 'point --database-url at the coordinator');
    return { citusVersion: server.version, findings, supersedes: NOTHING };
  }
  const role = await q.readCitusRole(pool, runtimeRole);
  if (!role.propagates) {
    add('LBMT_CITUS_ROLE_SETTING_MISSING', 'error', `role ${runtimeRole}`, "SET LOCAL of the tenant is not propagated to the workers for this role: tenant transactions fail (closed) with LBMT_CITUS_TENANT_NOT_SET", `ALTER ROLE ${quoteIdent(runtimeRole)} SET citus.propagate_set_commands = 'local';`);
  }
  if (!role.setTenant && config.engine === 'citus') {
    add('LBMT_CITUS_SET_TENANT_MISSING', 'error', 'function linkbay.set_tenant(text)', 'missing: tenant transactions in Citus mode fail (closed) with LBMT_CITUS_TENANT_NOT_SET', 'apply the Citus-mode migrations (linkbay-multitenant generate with "engine": "citus")');
  }
  if (tables.length === 0) return { citusVersion: server.version, findings, supersedes: NOTHING };

  const distribution = new Map((await q.readDistribution(pool, tables.map((t) => t.relid))).map((d) => [d.relid, d]));
  const anchor = distribution.get(tables[0]!.relid);
  for (const { relid, table } of tables) {
    const object = `${table.schema}.${table.table}`;
    const d = distribution.get(relid);
    const regenerate = `SELECT create_distributed_table(${quoteIdentLiteral(table)}, '${table.tenantColumn}', colocate_with => ${quoteIdentLiteral(tables[0]!.table)});\n-- or regenerate with "engine": "citus" and apply`;
    if (!d || d.method === null) {
      add('LBMT_CITUS_TABLE_NOT_DISTRIBUTED', 'warning', object, 'not in Citus: a local table of the coordinator, not spread over the workers', regenerate);
      continue;
    }
    if (d.method !== 'h') {
      add('LBMT_CITUS_TABLE_NOT_DISTRIBUTED', 'error', object, `a ${d.replication === 't' ? 'reference' : 'Citus local'} table, not distributed by ${table.tenantColumn}: every node holds every tenant's rows`, `SELECT undistribute_table(${quoteIdentLiteral(table)});\n${regenerate}`);
    } else if (d.column !== table.tenantColumn) {
      add('LBMT_CITUS_POLICY_NOT_ON_DISTRIBUTION_COLUMN', 'error', object, `distributed by ${d.column ?? '?'}, not by the tenant column ${table.tenantColumn}: Citus does not enforce policies on other columns than the distribution column (citusdata/citus#7182)`, `SELECT alter_distributed_table(${quoteIdentLiteral(table)}, distribution_column := '${table.tenantColumn}');`);
    } else if (anchor && d.colocation !== anchor.colocation && tables[0]!.relid !== relid) {
      add('LBMT_CITUS_NOT_COLOCATED', 'warning', object, `not colocated with ${tables[0]!.table.schema}.${tables[0]!.table.table}: joins on the tenant column run across nodes`, `SELECT update_distributed_table_colocation(${quoteIdentLiteral(table)}, colocate_with := ${quoteIdentLiteral(tables[0]!.table)});`);
    }
    findings.push(...restrictiveFindings(policies.filter((p) => p.relid === relid), table));
    findings.push(...(await shardFindings(pool, config, runtimeRole, relid, table)));
  }
  const supersedes = config.engine === 'citus' ? new Set(['LBMT_ISOLATION_POLICY_PERMISSIVE']) : NOTHING;
  return { citusVersion: server.version, findings, supersedes };
}

export async function shardFindings(pool: Queryable, config: TenancyConfig, runtimeRole: string, relid: number, table: TenantTable): Promise<Finding[]> {
  const object = `${table.schema}.${table.table}`;
  const sql = qualifiedName(table);
  let shards: q.ShardRow[];
  try {
    shards = await q.readShardPolicies(pool, relid, runtimeRole);
  } catch (error) {
    return [{ code: 'LBMT_CITUS_SHARDS_UNREADABLE', severity: 'error', object, message: `the shards' policies could not be read: ${(error as Error).message}`, fix: 'run doctor as a role that may run run_command_on_shards, on the coordinator' }];
  }
  const findings: Finding[] = [];
  const add = (code: string, bad: q.ShardRow[], message: string, fix: string) => {
    if (bad.length) findings.push({ code, severity: 'error', object, message: `${bad.length} of ${shards.length} shards (${bad.slice(0, 3).map((s) => s.shard).join(', ')}${bad.length > 3 ? ', ...' : ''}): ${message}`, fix });
  };
  const failed = shards.filter((s) => !s.success);
  add('LBMT_CITUS_SHARDS_UNREADABLE', failed, `could not be read (${failed[0]?.error ?? ''})`, 'check that the coordinator can reach every worker as this role');
  const read = shards.filter((s) => s.success);
  const check = (e: string | null) => isTenantCheck(e, table.tenantColumn, config.setting);
  const policy = (s: q.ShardRow) => s.policies.find((p) => p.applies && p.cmd === '*' && p.permissive && check(p.using) && check(p.check));
  const regenerate = `-- regenerate with "engine": "citus" and apply; Citus re-creates the shards' policies from the coordinator's:\nDROP POLICY IF EXISTS ${ISOLATION_POLICY} ON ${sql};\nCREATE POLICY ${ISOLATION_POLICY} ON ${sql} AS PERMISSIVE FOR ALL TO PUBLIC USING (...) WITH CHECK (...);`;
  add('LBMT_CITUS_SHARD_RLS_DISABLED', read.filter((s) => !s.rls || !s.forced), 'row level security is not enabled and forced on the shard', `ALTER TABLE ${sql} ENABLE ROW LEVEL SECURITY;\nALTER TABLE ${sql} FORCE ROW LEVEL SECURITY;`);
  add('LBMT_CITUS_SHARD_POLICY_MISSING', read.filter((s) => !policy(s)), `no PERMISSIVE FOR ALL policy compares ${table.tenantColumn} to current_setting('${config.setting}') in USING and WITH CHECK there`, regenerate);
  add(
    'LBMT_CITUS_EXTRA_PERMISSIVE_POLICY',
    read.filter((s) => s.policies.some((p) => p.applies && p.permissive && p !== policy(s))),
    `a permissive policy besides the isolation policy applies to ${runtimeRole} on the shard: permissive policies are OR-ed, so it opens other tenants' rows`,
    `-- on the coordinator (Citus propagates it to the shards):\nDROP POLICY <name> ON ${sql};`,
  );
  return findings;
}

/** RESTRICTIVE policies on a distributed table of the coordinator: Citus deparses them without the flag. */
function restrictiveFindings(policies: ReadonlyArray<{ name: string; permissive: boolean }>, table: TenantTable): Finding[] {
  return policies
    .filter((p) => !p.permissive)
    .map((p) => ({
      code: 'LBMT_CITUS_RESTRICTIVE_NOT_ENFORCED',
      severity: 'error' as const,
      object: `${table.schema}.${table.table}`,
      message: `policy ${p.name} is RESTRICTIVE on the coordinator, but Citus creates it PERMISSIVE on the shards, where it is OR-ed with the other permissive policies: it does not restrict anything`,
      fix: `-- regenerate with "engine": "citus" (one permissive isolation policy) and apply`,
    }));
}

function quoteIdentLiteral(table: TenantTable): string {
  return `'${qualifiedName(table).replaceAll("'", "''")}'`;
}
