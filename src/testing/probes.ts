/**
 * The isolation check's probes: each runs inside a savepoint that is always rolled back, and its
 * outcome is the result or the SQLSTATE it failed with; server messages that may quote row values
 * are withheld from reports. `writeProbes` are those a tenant runs against the other tenant's rows.
 */
import { insertCopy, keyMatch, type TableShape, type Truth } from './shape.js';
import { citusRefused } from '../citus/testing.js';

/** A probe's outcome: its result, or the SQLSTATE and message it failed with. */
export type Outcome = { readonly rowCount: number; readonly rows: any[] } | { readonly sqlState: string; readonly message: string };

import type { Queryable, QueryOutput } from '../pool.js';
export type { Queryable, QueryOutput } from '../pool.js';

/** Where a check writes what it found. */
export interface Findings {
  readonly notes: string[];
  readonly breaches: string[];
}

/** Runs one statement (or `steps`) inside a savepoint that is rolled back, whatever it does. */
export async function probe(q: Queryable, steps: string | (() => Promise<QueryOutput>), values: unknown[] = []): Promise<Outcome> {
  await q.query('SAVEPOINT lbmt_probe');
  try {
    const result = await (typeof steps === 'string' ? q.query(steps, values) : steps());
    return { rowCount: result.rowCount ?? 0, rows: result.rows };
  } catch (error) {
    const sqlState = sqlStateOf(error);
    if (sqlState === undefined) throw error;
    return { sqlState, message: String((error as { message?: unknown }).message) };
  } finally {
    await q.query('ROLLBACK TO SAVEPOINT lbmt_probe');
  }
}

/** Refused by row level security (or by a missing privilege, which refuses just as well; or by Citus, src/citus/testing.ts). */
export function refused(outcome: Outcome): boolean {
  return 'sqlState' in outcome && (outcome.sqlState === '42501' || citusRefused(outcome));
}

export function affected(outcome: Outcome, rows: number): boolean {
  return 'rowCount' in outcome && outcome.rowCount === rows;
}

/** The SQLSTATE of a driver error, also when the library wrapped it (TenantIsolationError keeps it in `cause`). */
export function sqlStateOf(error: unknown): string | undefined {
  for (let e = error, depth = 0; e !== null && typeof e === 'object' && depth < 5; e = (e as { cause?: unknown }).cause, depth += 1) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}

// Server messages that name objects, never row values. Others (a trigger's RAISE, say) may quote
// the row being written, so the report keeps only their SQLSTATE.
const SAFE_MESSAGES: ReadonlySet<string> = new Set(['42501', '23505', '23503', '23514', '23502', '22P02', '42704', '24000']);

export function describe(outcome: Outcome): string {
  if (!('sqlState' in outcome)) return `affected ${outcome.rowCount} row(s)`;
  const message = SAFE_MESSAGES.has(outcome.sqlState) ? outcome.message : 'message withheld: it may quote row values';
  return `failed with SQLSTATE ${outcome.sqlState} (${message})`;
}

export interface Probing {
  readonly self: string;
  readonly other: string;
  readonly truth: Truth;
  readonly otherTruth: Truth;
  /** Message prefix: `schema.table: as tenant <id>,`. */
  readonly as: string;
}

/** As tenant `self`: writing rows of `other`, or moving rows to it, is refused or reaches nothing. */
export async function writeProbes(tx: Queryable, shape: TableShape, p: Probing, result: Findings): Promise<void> {
  const { self, other, as } = p;
  const sample = p.truth.sample;
  if (!sample) {
    result.notes.push(`${as} write probes skipped: the tenant has no row in the table to copy`);
  } else if (!shape.insertable.includes(shape.tenantColumn)) {
    result.notes.push(`${as} write probes skipped: the tenant column is not writable`);
  } else {
    // An UPDATE whose WHERE reads columns also checks the new row against the SELECT policies, which
    // would hide a WITH CHECK (true). WHERE CURRENT OF reads none: only WITH CHECK judges the new row.
    const move = await probe(tx, async () => {
      await tx.query(`DECLARE lbmt_probe_cursor CURSOR FOR SELECT FROM ${shape.sql} AS lbmt_row WHERE ${keyMatch(shape, 1)} FOR UPDATE`, [...sample.key]);
      const fetched = await tx.query('FETCH lbmt_probe_cursor');
      if (fetched.rowCount === 0) return fetched; // not visible: nothing to move (the visibility check says why)
      return tx.query(`UPDATE ${shape.sql} SET ${shape.column} = $1 WHERE CURRENT OF lbmt_probe_cursor`, [other]);
    });
    if (!refused(move) && !affected(move, 0)) {
      result.breaches.push(`${as} UPDATE moving one of its rows to tenant ${other} ${describe(move)}; expected 0 rows or a row level security refusal (42501)`);
    }
    const insert = await probe(tx, insertCopy(shape), [sample.row, shape.tenantColumn, other]);
    if (!refused(insert)) {
      result.breaches.push(`${as} INSERT of a row for tenant ${other} ${describe(insert)}; expected a row level security refusal (42501)`);
    }
  }

  // A forgotten WHERE: an UPDATE reading no column is judged by the UPDATE policies alone, not the
  // SELECT ones. Setting the tenant column to the current tenant leaves the tenant's own rows as they are.
  const everything = await probe(tx, `UPDATE ${shape.sql} SET ${shape.column} = $1`, [self]);
  if ('rowCount' in everything && everything.rowCount > p.truth.count) {
    result.breaches.push(`${as} UPDATE without WHERE reached ${everything.rowCount} row(s), the tenant has ${p.truth.count}`);
  } else if ('sqlState' in everything && !refused(everything)) {
    result.notes.push(`${as} the UPDATE-without-WHERE probe was inconclusive: it ${describe(everything)}`);
  }

  const otherSample = p.otherTruth.sample;
  if (!otherSample) {
    result.notes.push(`${as} UPDATE/DELETE probes of tenant ${other}'s rows skipped: tenant ${other} has no row in the table`);
    return;
  }
  const key = [...otherSample.key];
  const update = await probe(tx, `UPDATE ${shape.sql} AS lbmt_row SET ${shape.column} = lbmt_row.${shape.column} WHERE ${keyMatch(shape, 1)}`, key);
  if (!affected(update, 0)) result.breaches.push(`${as} UPDATE of a row of tenant ${other} ${describe(update)}; expected 0 rows`);
  const remove = await probe(tx, `DELETE FROM ${shape.sql} AS lbmt_row WHERE ${keyMatch(shape, 1)}`, key);
  if (!affected(remove, 0)) result.breaches.push(`${as} DELETE of a row of tenant ${other} ${describe(remove)}; expected 0 rows`);
}
