/**
 * Live isolation probes (`doctor --probe`, `probeTenantIsolation`): two synthetic tenants per run,
 * each given a copy of a real row of every tenant table, then — as the runtime role with one of
 * them current — every way of reaching the other's row: read, UPDATE, DELETE, INSERT for it, upsert
 * (`ON CONFLICT DO UPDATE`), and a join to every other tenant table; then, with no tenant set, the
 * runtime role must see no row; finally (given `appPool`) a pooled connection with no tenant must
 * see nothing. Everything runs in one transaction that is rolled back, each
 * probe inside a savepoint rolled back too: nothing is left behind, whatever a probe finds.
 *
 * Needs a connection that may SET ROLE to the runtime role and read every row (the migration role
 * as a superuser: what doctor runs as). A table without any row to copy is skipped, with a note.
 */
import { randomUUID } from 'node:crypto';
import { quoteIdent, quoteLiteral, type TenancyConfig } from '../config.js';
import type { Queryable, TenantPool } from '../pool.js';
import { insertCopy, readShape, type TableShape } from './shape.js';
import { describe, probe, refused, type Outcome } from './probes.js';

export interface LiveProbeOptions {
  /** A pool whose role may SET ROLE to the runtime role and sees every row (superuser). */
  readonly pool: TenantPool;
  readonly config: TenancyConfig;
  /** Default `config.roles.app`. */
  readonly runtimeRole?: string;
  /** The application's pool (the runtime role): for the pooled-connection check. Optional. */
  readonly appPool?: Queryable;
}

export interface LiveProbeReport {
  /** No breach, and the probes ran: false when they could not run at all (`ran`), which proves nothing. */
  readonly ok: boolean;
  /** false when the probes could not run (the connection is not a superuser): see `notes`. */
  readonly ran: boolean;
  readonly breaches: string[];
  readonly notes: string[];
  /** Tables probed (the others are in `notes`). */
  readonly probed: string[];
}

interface Planted {
  readonly shape: TableShape;
  /** The row key (primary key values as text, else the whole row as text) of A's synthetic row. */
  readonly keyA: string[];
}

const SYNTHETIC: Record<TenancyConfig['tenantIdType'], () => string> = {
  uuid: () => randomUUID(),
  text: () => `lbmt-probe-${randomUUID().slice(0, 8)}`,
  bigint: () => String(8_000_000_000_000_000_000n + BigInt(Math.floor(Math.random() * 1e12))),
};

export async function probeTenantIsolation(options: LiveProbeOptions): Promise<LiveProbeReport> {
  const { config } = options;
  const role = options.runtimeRole ?? config.roles.app;
  const report: LiveProbeReport = { ok: true, ran: true, breaches: [], notes: [], probed: [] };
  const [a, b] = [SYNTHETIC[config.tenantIdType](), SYNTHETIC[config.tenantIdType]()];
  const client = await options.pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    const { rows } = await client.query(`SELECT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) AS superuser, pg_catalog.to_regclass('linkbay.tenants') IS NOT NULL AS registry`);
    if (!rows[0].superuser) {
      report.notes.push('live probes skipped: they need a superuser connection (to SET ROLE to the runtime role and read every row)');
      return { ...report, ok: false, ran: false };
    }
    // Synthetic tenants in the registry, so that foreign keys to it hold (rolled back with the rest).
    if (rows[0].registry) {
      for (const id of [a, b]) await client.query(`INSERT INTO linkbay.tenants (id, slug, name) VALUES ($1, $2, 'lbmt probe')`, [id, `lbmt-probe-${randomUUID().slice(0, 8)}`]);
    }
    const as = (tenant: string) => client.query(`SELECT set_config(${quoteLiteral(config.setting)}, $1, true)`, [tenant]);
    // First, on a session that never had a tenant (the setting NULL, not the '' it reads once set
    // and reset: PITFALLS 11): the runtime role sees no real row. Only checkable before any set_config.
    const fresh = await client.query(`SELECT current_setting(${quoteLiteral(config.setting)}, true) IS NULL AS unset`);
    if (fresh.rows[0].unset) {
      await client.query(`SET LOCAL ROLE ${quoteIdent(role)}`);
      for (const table of config.tables) {
        const seen = await probe(client, `SELECT count(*)::int AS n FROM ${quoteIdent(table.schema)}.${quoteIdent(table.table)}`, []);
        if ('rows' in seen && seen.rows[0].n !== 0) report.breaches.push(`${table.schema}.${table.table}: as ${role} on a session that never set a tenant, reading the table sees ${seen.rows[0].n} row(s)`);
      }
      await client.query('RESET ROLE');
    }
    const planted: Planted[] = [];
    // Plant a copy of a real row for A and for B in every table. Foreign keys would refuse a copied
    // child whose parent is another tenant's: they (and other triggers) are off while planting
    // (session_replication_role = replica, superuser only), back on for the probes.
    await client.query(`SET LOCAL session_replication_role = replica`);
    for (const table of config.tables) {
      const shape = await readShape(client, table);
      if (typeof shape === 'string') {
        report.notes.push(`${table.schema}.${table.table}: not probed (${shape})`);
        continue;
      }
      const sample = await client.query(`SELECT to_jsonb(lbmt_row.*)::text AS row FROM ${shape.sql} AS lbmt_row LIMIT 1`);
      if (!sample.rows[0]) {
        report.notes.push(`${shape.name}: not probed (no row to copy: seed one)`);
        continue;
      }
      const returning = shape.key.length ? shape.key.map((c) => `${quoteIdent(c)}::text`).join(', ') : `(${shape.sql}.*)::text`;
      await client.query('SAVEPOINT lbmt_plant');
      try {
        await client.query(`SET LOCAL ROLE ${quoteIdent(role)}`);
        await as(a);
        const inserted = await client.query(`${insertCopy(shape)} RETURNING ${returning}`, [sample.rows[0].row, shape.tenantColumn, a]);
        await as(b);
        await client.query(insertCopy(shape), [sample.rows[0].row, shape.tenantColumn, b]);
        await client.query('RESET ROLE');
        await client.query('RELEASE SAVEPOINT lbmt_plant');
        planted.push({ shape, keyA: Object.values(inserted.rows[0]).map(String) });
      } catch (error) {
        await client.query('ROLLBACK TO SAVEPOINT lbmt_plant');
        await client.query('RESET ROLE');
        report.notes.push(`${shape.name}: not probed (a synthetic row could not be written as ${role}: ${(error as { code?: string }).code ?? ''} ${(error as Error).message})`);
      }
    }
    // As B, every way of reaching A's rows.
    await client.query(`SET LOCAL session_replication_role = origin`);
    await client.query(`SET LOCAL ROLE ${quoteIdent(role)}`);
    await as(b);
    for (const p of planted) {
      report.probed.push(p.shape.name);
      const where = keyWhere(p.shape, 1);
      const breach = (what: string, outcome: Outcome) => report.breaches.push(`${p.shape.name}: as a tenant, ${what} ${describe(outcome)}`);
      const read = await probe(client, `SELECT count(*)::int AS n FROM ${p.shape.sql} AS lbmt_row WHERE ${where}`, p.keyA);
      if (!('rows' in read) || read.rows[0].n !== 0) breach("reading another tenant's row", read);
      const byTenant = await probe(client, `SELECT count(*)::int AS n FROM ${p.shape.sql} AS lbmt_row WHERE lbmt_row.${p.shape.column} = $1`, [a]);
      if (!('rows' in byTenant) || byTenant.rows[0].n !== 0) breach("asking for another tenant's rows by its id", byTenant);
      const update = await probe(client, `UPDATE ${p.shape.sql} AS lbmt_row SET ${p.shape.column} = lbmt_row.${p.shape.column} WHERE ${where}`, p.keyA);
      if (!('rowCount' in update) || update.rowCount !== 0) breach("updating another tenant's row", update);
      const remove = await probe(client, `DELETE FROM ${p.shape.sql} AS lbmt_row WHERE ${where}`, p.keyA);
      if (!('rowCount' in remove) || remove.rowCount !== 0) breach("deleting another tenant's row", remove);
      const copy = await client.query(`SELECT to_jsonb(lbmt_row.*)::text AS row FROM ${p.shape.sql} AS lbmt_row LIMIT 1`);
      if (copy.rows[0]) {
        const insert = await probe(client, insertCopy(p.shape), [copy.rows[0].row, p.shape.tenantColumn, a]);
        if (!refused(insert)) breach('inserting a row for another tenant', insert);
        const set = p.shape.insertable.filter((c) => !p.shape.key.includes(c)).map((c) => `${quoteIdent(c)} = EXCLUDED.${quoteIdent(c)}`);
        if (p.shape.key.length && set.length) {
          const upsert = await probe(client, `${insertCopy(p.shape)} ON CONFLICT (${p.shape.key.map(quoteIdent).join(', ')}) DO UPDATE SET ${set.join(', ')}`, [copy.rows[0].row, p.shape.tenantColumn, a]);
          if (!refused(upsert)) breach('upserting a row for another tenant (ON CONFLICT DO UPDATE)', upsert);
        }
      }
      for (const other of planted) {
        if (other === p) continue;
        const join = await probe(
          client,
          `SELECT count(*)::int AS n FROM ${p.shape.sql} AS x JOIN ${other.shape.sql} AS y ON x.${p.shape.column} = y.${other.shape.column} WHERE x.${p.shape.column} = $1 OR y.${other.shape.column} = $1`,
          [a],
        );
        if (!('rows' in join) || join.rows[0].n !== 0) breach(`joining to ${other.shape.name} on the tenant column to reach another tenant's rows`, join);
      }
    }
    // As the runtime role with no tenant at all (what a pooled connection is between transactions):
    // no row. Here and not only in pooledCheck, which needs the application's pool: doctor --probe
    // has none, and a policy that falls back to the row's own tenant passes every probe above.
    await as('');
    for (const p of planted) {
      // An error fails closed (as in pooledCheck): only rows seen are a breach.
      const seen = await probe(client, `SELECT count(*)::int AS n FROM ${p.shape.sql} AS lbmt_row`, []);
      if ('rows' in seen && seen.rows[0].n !== 0) report.breaches.push(`${p.shape.name}: as ${role} with no tenant set, reading the table sees ${seen.rows[0].n} row(s)`);
    }
  } catch (error) {
    broken = true;
    throw error;
  } finally {
    await client.query('ROLLBACK').catch(() => (broken = true));
    client.release(broken || undefined);
  }
  if (options.appPool) await pooledCheck(options.appPool, config, report);
  return { ...report, ok: report.breaches.length === 0 };
}

function keyWhere(shape: TableShape, first: number): string {
  if (shape.key.length === 0) return `(lbmt_row.*)::text = $${first}`;
  return shape.key.map((column, i) => `lbmt_row.${quoteIdent(column)}::text = $${first + i}`).join(' AND ');
}

/** A pooled connection of the runtime role with no tenant set sees no setting and no row. */
async function pooledCheck(appPool: Queryable, config: TenancyConfig, report: LiveProbeReport): Promise<void> {
  for (let i = 0; i < 4; i += 1) {
    const { rows } = await appPool.query(`SELECT current_setting(${quoteLiteral(config.setting)}, true) AS setting`);
    if (rows[0].setting) report.breaches.push(`a pooled connection with no tenant set carries tenant ${rows[0].setting}`);
    for (const table of config.tables) {
      const seen = await appPool.query(`SELECT count(*)::int AS n FROM ${quoteIdent(table.schema)}.${quoteIdent(table.table)}`).catch(() => undefined);
      if (seen && seen.rows[0].n !== 0) report.breaches.push(`${table.schema}.${table.table}: a pooled connection with no tenant set sees ${seen.rows[0].n} row(s)`);
    }
  }
}
