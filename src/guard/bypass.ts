import { AsyncLocalStorage } from 'node:async_hooks';

interface BypassScope {
  readonly reason: string | undefined;
}

const storage = new AsyncLocalStorage<BypassScope>();

export interface AdminBypassOptions {
  /** Why the bypass is needed; carried in every bypass report (hook and channel). */
  readonly reason?: string;
}

/**
 * Runs `fn` with the SQL guard's checks turned off for the statements `fn` (and only `fn`, with
 * what it awaits) sends: the seed library's AdminQueryContext. The scope lives on
 * AsyncLocalStorage, so a bypass in one request never reaches another running concurrently.
 * Every statement that runs unchecked is reported (`onBypass` hook and the
 * `linkbay-multitenant:guard-bypass` channel). It bypasses the guard only: RLS still applies to the
 * role the statement runs as; use an admin pool for cross-tenant work on RLS tables.
 *
 * @example
 * const db = guard.wrap(pool);
 * await withAdminBypass(() => db.query('UPDATE legacy_settings SET value = $1', [v]), { reason: 'settings migration' });
 */
export function withAdminBypass<T>(fn: () => T, options: AdminBypassOptions = {}): T {
  return storage.run({ reason: options.reason }, fn);
}

/** The bypass of the current async scope, if any. */
export function activeBypass(): BypassScope | undefined {
  return storage.getStore();
}

/** Runs `fn` outside any bypass (for work spawned from a bypass that must be checked again). */
export function withoutAdminBypass<T>(fn: () => T): T {
  return storage.exit(fn);
}
