import type { TenantDb } from './tenant-db.js';
import type { IsolationLevel, TenantTransaction } from './transaction.js';

/**
 * A tenant transaction held open between a query builder's begin and its commit or rollback:
 * Kysely's Driver and Drizzle's session drive transactions by calls, not by a callback. Internal
 * (not exported from the barrel): the library hands transactions out only through callbacks, and
 * this is one — `db.withTenantTransaction`, whose callback stays pending until `commit()` or
 * `rollback()` settles it, so the lease lifecycle (release, destroy, events) is the handle's own.
 */
export interface HeldTransaction {
  readonly tx: TenantTransaction;
  /** Settles the callback and waits for COMMIT (or the error: TransactionAbortedError, ...). */
  commit(): Promise<void>;
  /** Settles the callback with a rollback and waits for ROLLBACK. */
  rollback(): Promise<void>;
}

/** Rejects the pending callback on rollback; never escapes this module. */
const ROLLBACK = Symbol('held transaction rollback');

/** Opens a held tenant transaction; rejects when it cannot begin (no client, a bad option). */
export async function holdTenantTransaction(
  db: TenantDb,
  tenantId: string,
  options: { isolationLevel?: IsolationLevel; readOnly?: boolean },
): Promise<HeldTransaction> {
  let ready!: (tx: TenantTransaction) => void;
  const opened = new Promise<TenantTransaction>((resolve) => (ready = resolve));
  let settle!: (rollback: boolean) => void;
  const pending = new Promise<void>((resolve, reject) => (settle = (rollback) => (rollback ? reject(ROLLBACK) : resolve())));
  const done = db.withTenantTransaction(tenantId, (tx) => {
    ready(tx);
    return pending;
  }, options);
  // withTenantTransaction can fail before it calls back (pool exhausted, connection refused).
  const tx = await Promise.race([opened, done.then(() => Promise.reject(new Error('the tenant transaction ended before it began')))]);
  let settled = false;
  const end = async (rollback: boolean) => {
    if (settled) throw new TypeError('this transaction has already ended');
    settled = true;
    settle(rollback);
    try {
      await done;
    } catch (error) {
      if (error !== ROLLBACK) throw error;
    }
  };
  return { tx, commit: () => end(false), rollback: () => end(true) };
}
