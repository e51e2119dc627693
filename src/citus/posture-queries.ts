/**
 * What doctor reads on a Citus cluster. The coordinator's catalog describes the shell tables; the
 * policies that are enforced are the shards', on the workers, read here with run_command_on_shards
 * (one command per shard, run by Citus on the node holding it).
 */
import { quoteLiteral } from '../config.js';
import type { Queryable } from '../posture/queries.js';

export interface CitusServerRow {
  /** Version of the citus extension in this database, null without it. */
  version: string | null;
  /** This node is the coordinator (citus_is_coordinator()); null without Citus. */
  coordinator: boolean | null;
}

export async function readCitus(db: Queryable): Promise<CitusServerRow> {
  const { rows } = await db.query(`SELECT extversion AS version FROM pg_catalog.pg_extension WHERE extname = 'citus'`);
  const version: string | null = rows[0]?.version ?? null;
  if (version === null) return { version, coordinator: null };
  const role = await db.query('SELECT pg_catalog.citus_is_coordinator() AS coordinator');
  return { version, coordinator: role.rows[0].coordinator };
}

export interface DistributionRow {
  relid: number;
  /** `h` hash-distributed, `n` reference or Citus local table, null when not in Citus's metadata. */
  method: string | null;
  /** `t` for reference tables. */
  replication: string | null;
  colocation: number | null;
  column: string | null;
}

export async function readDistribution(db: Queryable, relids: number[]): Promise<DistributionRow[]> {
  const { rows } = await db.query(
    `SELECT r.oid::int AS relid, p.partmethod::text AS method, p.repmodel::text AS replication, p.colocationid AS colocation,
            CASE WHEN p.partmethod = 'h' THEN pg_catalog.column_to_column_name(p.logicalrelid, p.partkey) END AS column
       FROM unnest($1::oid[]) AS r(oid) LEFT JOIN pg_catalog.pg_dist_partition p ON p.logicalrelid = r.oid`,
    [relids],
  );
  return rows;
}

export interface ShardPolicy {
  name: string;
  permissive: boolean;
  cmd: string;
  applies: boolean;
  using: string | null;
  check: string | null;
}

export interface ShardRow {
  shard: string;
  /** The command ran on the shard's node. */
  success: boolean;
  /** The node's error when it did not. */
  error: string | null;
  rls: boolean;
  forced: boolean;
  policies: ShardPolicy[];
}

/** RLS flags and policies of every shard of `relid`, as the worker holding it sees them. */
export async function readShardPolicies(db: Queryable, relid: number, runtimeRole: string): Promise<ShardRow[]> {
  const role = quoteLiteral(runtimeRole);
  // %s is the shard's qualified name (run_command_on_shards). Read on the worker, so that the
  // policies are those Citus created there, not the coordinator's. 'applies' by USAGE, not MEMBER:
  // see readPolicies in src/posture/queries.ts.
  const command = `SELECT json_build_object('rls', c.relrowsecurity, 'forced', c.relforcerowsecurity, 'policies', coalesce((
      SELECT json_agg(json_build_object('name', p.polname, 'permissive', p.polpermissive, 'cmd', p.polcmd,
               'using', pg_catalog.pg_get_expr(p.polqual, p.polrelid), 'check', pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid),
               'applies', 0::oid = ANY (p.polroles) OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles rt, unnest(p.polroles) AS r(oid)
                  WHERE rt.rolname = ${role} AND r.oid <> 0 AND pg_catalog.pg_has_role(rt.oid, r.oid, 'USAGE')))
               ORDER BY p.polname)
        FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid), '[]'::json))::text
    FROM pg_catalog.pg_class c WHERE c.oid = '%s'::regclass`;
  const { rows } = await db.query(
    `SELECT shardid::text AS shard, success, result FROM pg_catalog.run_command_on_shards($1::regclass, $2) ORDER BY shardid`,
    [relid, command],
  );
  return rows.map((row: { shard: string; success: boolean; result: string }) => {
    if (!row.success) return { shard: row.shard, success: false, error: row.result, rls: false, forced: false, policies: [] };
    const parsed = JSON.parse(row.result) as { rls: boolean; forced: boolean; policies: ShardPolicy[] };
    return { shard: row.shard, success: true, error: null, ...parsed };
  });
}

export interface CitusRoleRow {
  /** `citus.propagate_set_commands = 'local'` is set for the role (in this database or all). */
  propagates: boolean;
  /** linkbay.set_tenant(text) exists. */
  setTenant: boolean;
}

export async function readCitusRole(db: Queryable, runtimeRole: string): Promise<CitusRoleRow> {
  const { rows } = await db.query(
    `SELECT EXISTS (
              SELECT 1 FROM pg_catalog.pg_db_role_setting s JOIN pg_catalog.pg_roles r ON r.oid = s.setrole
               WHERE r.rolname = $1 AND s.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()))
                 AND 'citus.propagate_set_commands=local' = ANY (s.setconfig)) AS propagates,
            pg_catalog.to_regprocedure('linkbay.set_tenant(text)') IS NOT NULL AS "setTenant"`,
    [runtimeRole],
  );
  return rows[0];
}
