/**
 * `doctor --perf`: policies that isolate correctly but slowly. For each tenant table, EXPLAIN of a
 * tenant-scoped `SELECT` as the runtime role with a tenant set (in a transaction that is rolled
 * back, sequential scans discouraged so that any index able to serve the tenant predicate is
 * used), and a read of the policies' expressions:
 *
 * | code                              | severity | what                                                                 |
 * |-----------------------------------|----------|----------------------------------------------------------------------|
 * | LBMT_POLICY_TENANT_FILTER         | warning  | the tenant predicate is a Filter over every row, not an index condition |
 * | LBMT_POLICY_VOLATILE_FUNCTION     | warning  | a policy calls a VOLATILE function: evaluated per row, never indexed  |
 * | LBMT_POLICY_NON_LEAKPROOF_FUNCTION| info     | a policy calls a user function that is not LEAKPROOF                  |
 * | LBMT_POLICY_MIXED_PREDICATE       | warning  | a policy ANDs/ORs other conditions with the tenant predicate          |
 * | LBMT_PERF_CHECK_FAILED            | warning  | the EXPLAIN could not run (the message says why)                      |
 *
 * A missing index leading with the tenant column is LBMT_TENANT_INDEX_MISSING of the catalog
 * checks (posture.ts). Codes are stable.
 */
import { qualifiedName, quoteIdent, quoteLiteral, type TenancyConfig, type TenantTable } from '../config.js';
import type { Finding } from './index.js';
import type { TenantClient, TenantPool } from '../pool.js';

/** A syntactically valid id of each type, for EXPLAIN (no row needs to exist). */
const SAMPLE_ID: Record<TenancyConfig['tenantIdType'], string> = { uuid: '00000000-0000-4000-8000-000000000000', text: 'lbmt-doctor', bigint: '1' };

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  Schema?: string;
  'Index Cond'?: string;
  'Recheck Cond'?: string;
  Filter?: string;
  Plans?: PlanNode[];
}

interface PolicyRow {
  name: string;
  /** USING and WITH CHECK, as SQL. */
  expressions: string[];
  functions: Array<{ name: string; volatility: string; leakproof: boolean; schema: string }>;
}

/** Findings about how fast each tenant table's policies let a tenant-scoped query run. */
export async function checkPolicyPerformance(pool: TenantPool, config: TenancyConfig, runtimeRole = config.roles.app): Promise<Finding[]> {
  const findings: Finding[] = [];
  const client = await pool.connect();
  let broken = false;
  try {
    for (const table of config.tables) {
      const object = qualifiedName(table);
      try {
        findings.push(...planFindings(table, await explain(client, config, table, runtimeRole)));
        findings.push(...policyFindings(table, await readPolicyFunctions(client, table), config));
      } catch (error) {
        findings.push({
          code: 'LBMT_PERF_CHECK_FAILED',
          severity: 'warning',
          object,
          message: `EXPLAIN as ${runtimeRole} failed: ${(error as Error).message}`,
          fix: `run doctor as a role that may SET ROLE ${quoteIdent(runtimeRole)} (the migration role), and check the table exists`,
        });
      } finally {
        await client.query('ROLLBACK').catch(() => (broken = true));
      }
    }
  } finally {
    client.release(broken || undefined);
  }
  return findings;
}

async function explain(client: TenantClient, config: TenancyConfig, table: TenantTable, runtimeRole: string): Promise<PlanNode> {
  await client.query('BEGIN READ ONLY');
  const { rows } = await client.query('SELECT current_user AS me');
  if (rows[0].me !== runtimeRole) await client.query(`SET LOCAL ROLE ${quoteIdent(runtimeRole)}`);
  await client.query(`SELECT set_config(${quoteLiteral(config.setting)}, ${quoteLiteral(SAMPLE_ID[config.tenantIdType])}, true)`);
  await client.query('SET LOCAL enable_seqscan = off');
  const plan = await client.query(`EXPLAIN (FORMAT JSON) SELECT 1 FROM ${qualifiedName(table)}`);
  return (plan.rows[0]['QUERY PLAN'] as Array<{ Plan: PlanNode }>)[0]!.Plan;
}

function scans(node: PlanNode, out: PlanNode[] = []): PlanNode[] {
  if (node['Relation Name']) out.push(node);
  for (const child of node.Plans ?? []) scans(child, out);
  return out;
}

function planFindings(table: TenantTable, plan: PlanNode): Finding[] {
  const column = table.tenantColumn;
  const mentions = (text: string | undefined) => !!text && new RegExp(`\\b${column}\\b`).test(text);
  const findings: Finding[] = [];
  for (const scan of scans(plan)) {
    const indexed = mentions(scan['Index Cond']) || mentions(scan['Recheck Cond']);
    if (indexed) continue;
    findings.push({
      code: 'LBMT_POLICY_TENANT_FILTER',
      severity: 'warning',
      object: qualifiedName(table),
      message: `a tenant-scoped query reads it by ${scan['Node Type']} with the tenant predicate as a Filter${scan.Filter ? ` (${scan.Filter})` : ''}: every tenant's rows are read, then discarded`,
      fix: `CREATE INDEX ON ${qualifiedName(table)} (${quoteIdent(column)}); and keep the tenant predicate alone in its policy (a plain column = setting comparison)`,
    });
  }
  return findings;
}

async function readPolicyFunctions(client: TenantClient, table: TenantTable): Promise<PolicyRow[]> {
  // Function calls appear in the stored expression trees as `:funcid N` (and operators as `:opfuncid N`).
  const { rows } = await client.query(
    `SELECT p.polname::text AS name,
            array_remove(ARRAY[pg_catalog.pg_get_expr(p.polqual, p.polrelid), pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid)], NULL) AS expressions,
            coalesce((SELECT json_agg(json_build_object('name', f.proname, 'volatility', f.provolatile, 'leakproof', f.proleakproof, 'schema', fn.nspname))
                        FROM pg_catalog.pg_proc f JOIN pg_catalog.pg_namespace fn ON fn.oid = f.pronamespace
                       WHERE f.oid::text IN (SELECT m[1] FROM regexp_matches(coalesce(p.polqual::text, '') || ' ' || coalesce(p.polwithcheck::text, ''), ':(?:func|opfunc)id (\\d+)', 'g') AS m)),
                     '[]') AS functions
       FROM pg_catalog.pg_policy p
      WHERE p.polrelid = $1::regclass
      ORDER BY 1`,
    [qualifiedName(table)],
  );
  return rows;
}

function policyFindings(table: TenantTable, policies: readonly PolicyRow[], config: TenancyConfig): Finding[] {
  const object = qualifiedName(table);
  const findings: Finding[] = [];
  for (const policy of policies) {
    const where = `${object} policy ${policy.name}`;
    for (const fn of policy.functions) {
      if (fn.volatility === 'v') {
        findings.push({
          code: 'LBMT_POLICY_VOLATILE_FUNCTION',
          severity: 'warning',
          object: where,
          message: `calls ${fn.schema}.${fn.name}(), which is VOLATILE: it runs for every row and the predicate can never use an index`,
          fix: `mark it STABLE if it only reads (ALTER FUNCTION ${quoteIdent(fn.schema)}.${quoteIdent(fn.name)} STABLE), or compare the column to current_setting(${quoteLiteral(config.setting)}) directly`,
        });
      } else if (!fn.leakproof && fn.schema !== 'pg_catalog') {
        findings.push({
          code: 'LBMT_POLICY_NON_LEAKPROOF_FUNCTION',
          severity: 'info',
          object: where,
          message: `calls ${fn.schema}.${fn.name}(), which is not LEAKPROOF: the planner must evaluate it before the query's own conditions`,
          fix: 'keep functions out of the tenant predicate, or mark it LEAKPROOF if it truly reveals nothing (superuser only)',
        });
      }
    }
    if (policy.expressions.some((e) => e.includes(config.setting) && /\b(AND|OR)\b/i.test(e))) {
      findings.push({
        code: 'LBMT_POLICY_MIXED_PREDICATE',
        severity: 'warning',
        object: where,
        message: 'the tenant predicate shares the policy with other conditions: mixed in, it may stop being an index condition (and is harder to read)',
        fix: 'put the tenant comparison alone in a RESTRICTIVE policy, and the other conditions in permissive ones (what the generated policies do)',
      });
    }
  }
  return findings;
}
