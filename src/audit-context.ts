import { AsyncLocalStorage } from 'node:async_hooks';
import type { AuditContext } from './audit.js';

const storage = new AsyncLocalStorage<AuditContext>();

/**
 * The actor and reason of the current async call chain (an admin request), for the audit rows of
 * the admin actions it runs. A service method given its own `{ actor, reason }` uses that instead.
 * The admin routers set it for each request (after `authorize`), so the audit names who asked.
 *
 * @example
 * await runWithAuditContext({ actor: 'ops:jane', reason: 'ticket 4711' }, () => admin.suspendTenant(id));
 */
export function runWithAuditContext<T>(context: AuditContext, fn: () => T): T {
  return storage.run({ ...context }, fn);
}

/** The audit context of the current async scope, if any. */
export function currentAuditContext(): AuditContext | undefined {
  return storage.getStore();
}
