/**
 * Tenant placement on Citus: a large tenant on a shard of its own (`isolateTenant`, Citus's
 * isolate_tenant_to_new_shard, with its colocated tables), that shard moved to a chosen node
 * (`moveTenant`, citus_move_shard_placement), and per-tenant statistics (citus_stat_tenants).
 *
 * Citus re-creates the shards' policies from the coordinator's on every split and move (anything
 * added to a shard by hand is lost), so both operations read the new shards' policies afterwards
 * and throw PostureError when a shard of a tenant table is left without isolation.
 *
 * Run them as a superuser (or a table owner with BYPASSRLS), on the coordinator, outside any
 * transaction (they commit on their own). Citus copies the shard's rows as the calling role, and
 * under FORCE ROW LEVEL SECURITY with no tenant set the copy reads no row: run by the generated
 * owner role, a split or move loses the shard's data without an error (seen on Citus 13.2.2). So
 * they refuse a role subject to RLS, and compare the tenant's row counts before and after.
 */
import { qualifiedName, quoteIdent, type TenancyConfig } from '../config.js';
import { CitusPlacementError, PostureError } from '../errors.js';
import type { Finding } from '../posture/index.js';
import type { Queryable } from '../posture/queries.js';
import { canonicalTenantId } from '../tenant-id.js';
import { shardFindings } from './posture.js';
import { requireCitus } from './batch.js';

/** Citus's shard_transfer_mode: `block_writes` needs no logical replication; `force_logical` does not block writes. */
export type ShardTransferMode = 'auto' | 'block_writes' | 'force_logical';

export interface PlacementOptions {
  readonly tenancy: TenancyConfig;
  /** Default `block_writes`: works on every table, blocks the tenant's writes while its shard is copied. */
  readonly transferMode?: ShardTransferMode;
  /** Role whose policies are re-checked. Default `tenancy.roles.app`. */
  readonly runtimeRole?: string;
}

export interface TenantPlacement {
  /** Shard of the first tenant table holding the tenant (its colocated shards move with it). */
  readonly shardId: string;
  readonly host: string;
  readonly port: number;
  /** The tenant is alone in its shard. */
  readonly isolated: boolean;
}

const MODES: ReadonlySet<string> = new Set(['auto', 'block_writes', 'force_logical']);

/** Where the tenant's rows live: the shard of the first tenant table and its node. */
export async function tenantPlacement(pool: Queryable, tenantId: string | number | bigint, options: { tenancy: TenancyConfig }): Promise<TenantPlacement> {
  const { tenancy, table, id } = prepare(tenantId, options);
  const { rows } = await pool.query(
    `SELECT s.shardid::text AS "shardId", n.nodename AS host, n.nodeport AS port, s.shardminvalue = s.shardmaxvalue AS isolated
       FROM pg_catalog.pg_dist_shard s
       JOIN pg_catalog.pg_dist_placement p ON p.shardid = s.shardid
       JOIN pg_catalog.pg_dist_node n ON n.groupid = p.groupid
      WHERE s.shardid = pg_catalog.get_shard_id_for_distribution_column($1::regclass, $2::${tenancy.tenantIdType})`,
    [table, id],
  );
  if (!rows[0]) throw new TypeError(`no shard found for the tenant in ${table}: is it distributed?`);
  return rows[0];
}

/**
 * Gives the tenant a shard of its own in every colocated tenant table (CASCADE), on the node it was
 * on. Idempotent: a tenant already alone in its shard is left as it is.
 */
export async function isolateTenant(pool: Queryable, tenantId: string | number | bigint, options: PlacementOptions): Promise<TenantPlacement> {
  const { tenancy, table, id, mode } = prepare(tenantId, options);
  await ensureBypassesRls(pool);
  const before = await tenantPlacement(pool, id, { tenancy });
  const rows = await tenantRows(pool, tenancy, id);
  if (!before.isolated) {
    // The mode is one of MODES, as a literal: a cast to citus.shard_transfer_mode needs USAGE on schema citus.
    await pool.query(`SELECT pg_catalog.isolate_tenant_to_new_shard($1::regclass, $2::${tenancy.tenantIdType}, 'CASCADE', shard_transfer_mode => '${mode}')`, [table, id]);
  }
  await compareRows(pool, tenancy, id, rows);
  await recheck(pool, tenancy, options.runtimeRole);
  return tenantPlacement(pool, id, { tenancy });
}

/** Moves the tenant's shard (and its colocated shards) to the node `target`. */
export async function moveTenant(pool: Queryable, tenantId: string | number | bigint, target: { host: string; port: number }, options: PlacementOptions): Promise<TenantPlacement> {
  const { tenancy, id, mode } = prepare(tenantId, options);
  await ensureBypassesRls(pool);
  const before = await tenantPlacement(pool, id, { tenancy });
  const rows = await tenantRows(pool, tenancy, id);
  if (before.host !== target.host || before.port !== target.port) {
    await pool.query(
      `SELECT pg_catalog.citus_move_shard_placement($1::bigint, $2, $3, $4, $5, shard_transfer_mode => '${mode}')`,
      [before.shardId, before.host, before.port, target.host, target.port],
    );
  }
  await compareRows(pool, tenancy, id, rows);
  await recheck(pool, tenancy, options.runtimeRole);
  return tenantPlacement(pool, id, { tenancy });
}

export interface TenantStatistic {
  readonly tenantId: string;
  readonly nodeId: number;
  readonly colocationId: number;
  readonly readsThisPeriod: number;
  readonly queriesThisPeriod: number;
  readonly queriesLastPeriod: number;
  readonly cpuSecondsThisPeriod: number;
  readonly cpuSecondsLastPeriod: number;
}

/**
 * Per-tenant counters from citus_stat_tenants (needs `citus.stat_tenants_track = 'all'`, and a
 * superuser or a role granted EXECUTE on citus_stat_tenants and citus_stat_tenants_local). Citus
 * attributes a query to a tenant when it is routed by the distribution column: a statement that
 * names `WHERE tenant_id = $1` (RLS alone does not route it to one shard).
 */
export async function tenantStatistics(pool: Queryable): Promise<TenantStatistic[]> {
  const { rows } = await pool.query(
    `SELECT tenant_attribute AS "tenantId", nodeid AS "nodeId", colocation_id AS "colocationId",
            read_count_in_this_period AS "readsThisPeriod", query_count_in_this_period AS "queriesThisPeriod",
            query_count_in_last_period AS "queriesLastPeriod",
            cpu_usage_in_this_period AS "cpuSecondsThisPeriod", cpu_usage_in_last_period AS "cpuSecondsLastPeriod"
       FROM pg_catalog.citus_stat_tenants(true) ORDER BY query_count_in_this_period DESC, tenant_attribute`,
  );
  return rows;
}

function prepare(tenantId: string | number | bigint, options: { tenancy: TenancyConfig; transferMode?: ShardTransferMode }) {
  const tenancy = requireCitus(options.tenancy);
  const first = tenancy.tables[0];
  if (!first) throw new TypeError('the tenancy lists no tenant table');
  const mode = options.transferMode ?? 'block_writes';
  if (!MODES.has(mode)) throw new TypeError('`transferMode` must be "auto", "block_writes" or "force_logical"');
  return { tenancy, table: qualifiedName(first), id: canonicalTenantId(tenantId, tenancy.tenantIdType), mode };
}

async function ensureBypassesRls(pool: Queryable): Promise<void> {
  const { rows } = await pool.query('SELECT rolsuper OR rolbypassrls AS bypasses FROM pg_catalog.pg_roles WHERE rolname = current_user');
  if (rows[0]?.bypasses !== true) {
    throw new CitusPlacementError('LBMT_CITUS_PLACEMENT_ROLE', 'shard splits and moves must run as a superuser (or a table owner with BYPASSRLS): Citus copies the rows as this role, and under row level security it would copy none');
  }
}

/** The tenant's row count in each tenant table (the role bypasses RLS). */
async function tenantRows(pool: Queryable, tenancy: TenancyConfig, id: string): Promise<number[]> {
  const counts: number[] = [];
  for (const t of tenancy.tables) {
    const { rows } = await pool.query(`SELECT count(*)::int AS n FROM ${qualifiedName(t)} WHERE ${quoteIdent(t.tenantColumn)} = $1`, [id]);
    counts.push(rows[0].n);
  }
  return counts;
}

async function compareRows(pool: Queryable, tenancy: TenancyConfig, id: string, before: number[]): Promise<void> {
  const after = await tenantRows(pool, tenancy, id);
  const lost = tenancy.tables.filter((_, i) => after[i]! < before[i]!).map((t, i) => `${t.schema}.${t.table} (${before[i]} before, ${after[i]} after)`);
  if (lost.length) {
    throw new CitusPlacementError('LBMT_CITUS_PLACEMENT_ROWS_LOST', `the tenant has fewer rows after the shard change: ${lost.join(', ')}; unless they were deleted meanwhile, the copy lost them`);
  }
}

/** The policies of every shard of every tenant table, read again on the workers. */
async function recheck(pool: Queryable, tenancy: TenancyConfig, runtimeRole = tenancy.roles.app): Promise<void> {
  const findings: Finding[] = [];
  for (const table of tenancy.tables) {
    const { rows } = await pool.query('SELECT $1::regclass::oid::int AS relid', [qualifiedName(table)]);
    findings.push(...(await shardFindings(pool, tenancy, runtimeRole, rows[0].relid, table)));
  }
  const errors = findings.filter((f) => f.severity === 'error');
  if (errors.length) {
    throw new PostureError(`after the shard change, tenant isolation is broken on shards:\n${errors.map((f) => `  ${f.code} ${f.object}: ${f.message}`).join('\n')}`, errors);
  }
}
