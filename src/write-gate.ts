/**
 * The write gate of tenant moves (src/portability/jobs.ts). Every tenant transaction's prelude (the
 * `set_config` statement that already carries the tenant, src/prelude.ts: no extra round trip) takes
 * a transaction-level SHARED advisory lock on the tenant's write key, without waiting. A move holds
 * that key EXCLUSIVELY on the tenant's current database from just after it freezes writes until the
 * switch has settled:
 *
 * - taking it waits for every tenant transaction already running there to end, so a write that
 *   began before the freeze is committed (and so copied) before the copy's snapshot is taken —
 *   the barrier a check before the transaction (the Koa middleware, a registry read) cannot give;
 * - while it is held, a tenant transaction cannot take the shared lock and the prelude makes it READ
 *   ONLY instead: its reads are served, its first write fails (25006), which the library reports as
 *   TenantMovingError (503 with Retry-After through Koa), knowing from the prelude's row that the
 *   gate closed (WriteGateAnswer).
 *
 * The lock is xact-level inside an open transaction on the move's side (safe through PgBouncer in
 * transaction mode: the server connection stays pinned to that transaction), and it dies with the
 * move's connection, so a crashed move never leaves a tenant read-only; the job's `frozen` row
 * (linkbay.tenant_writes_frozen) still refuses writes at the middleware until another instance
 * resumes the move, takes the key again and re-reads the source before it switches.
 */
import { TenantMovingError } from './portability/errors.js';

/** The tenant's write key, from the prelude's `$1` (the canonical tenant id). */
const KEY = `pg_catalog.hashtextextended('linkbay-writes:' || $1, 0)`;

/** The prelude's gate: NULL when the shared lock was taken, else the transaction turned READ ONLY. */
export const WRITE_GATE_SQL = `CASE WHEN pg_catalog.pg_try_advisory_xact_lock_shared(${KEY}) THEN NULL ELSE pg_catalog.set_config('transaction_read_only', 'on', true) END`;

/** The move's side: waits for the tenant's running transactions, then holds the key to the end of its transaction. */
export const WRITE_FREEZE_SQL = `SELECT pg_catalog.pg_advisory_xact_lock(${KEY})`;

const READ_ONLY_TRANSACTION = '25006';

/**
 * The gate's answer for one transaction, read from the prelude's own row (its second field: NULL,
 * or 'on' when a move holds the key; pass `onPreludeRow` in the batch options): no extra query. A
 * write then refused (25006) is TenantMovingError; a read-only refusal of the caller's own or of a
 * standby, with the gate open, stays what it is.
 */
export class WriteGateAnswer {
  closed = false;
  readonly onPreludeRow = (fields: ReadonlyArray<string | null>): void => {
    this.closed = fields[1] === 'on';
  };

  refine(error: unknown): unknown {
    if (!this.closed || (error as { code?: unknown } | null)?.code !== READ_ONLY_TRANSACTION) return error;
    return new TenantMovingError(undefined, { cause: error });
  }
}
