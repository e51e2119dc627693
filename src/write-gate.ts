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
 *   TenantMovingError (503 with Retry-After through Koa) after checking that the key is really held.
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

/** True when no move holds the key (a one-statement implicit transaction: the shared lock ends with it). */
export const WRITE_KEY_FREE_SQL = `SELECT pg_catalog.pg_try_advisory_xact_lock_shared(${KEY}) AS free`;

const READ_ONLY_TRANSACTION = '25006';

/**
 * A write refused in a transaction the caller did not make read-only: when a move holds the
 * tenant's key (asked with `keyFree`, one statement, only on this error path), TenantMovingError;
 * otherwise (a standby, a `SET TRANSACTION READ ONLY` of the caller's own) the error unchanged.
 */
export async function refineWriteRefusal(error: unknown, readOnlyRequested: boolean, keyFree: () => Promise<boolean>): Promise<unknown> {
  if (readOnlyRequested || (error as { code?: unknown } | null)?.code !== READ_ONLY_TRANSACTION) return error;
  let free: boolean;
  try {
    free = await keyFree();
  } catch {
    return error;
  }
  return free ? error : new TenantMovingError(undefined, { cause: error });
}
