import diagnostics from 'node:diagnostics_channel';
import { connectClient, releaseClient, settled, watchClient, type ReleaseFailure } from './client-hygiene.js';
import { TenantContext } from './context.js';
import { mapDatabaseError } from './errors.js';
import type { TenantPool } from './pool.js';
import { writeAudit, auditContext } from './audit.js';
import { isTimeoutMs, MAX_TIMEOUT_MS } from './limits.js';

export interface SystemContextOptions {
  /** Why cross-tenant access is needed: 1 to 200 printable characters. Required. */
  readonly reason: string;
  /** Allow writes. Default false: the transaction is READ ONLY. */
  readonly write?: boolean;
  /** `SET LOCAL statement_timeout`, in milliseconds. Default: the server's. */
  readonly statementTimeoutMs?: number;
  /**
   * Record the work in the audit log (`linkbay.audit_log`, action `system-context`, with the reason):
   * for a read, committed on its own before the work (a read that fails after reading still leaves
   * its trace); for a write, in the work's transaction (a change rolled back leaves none; its
   * diagnostics event still reports it). `true` uses the current audit scope's
   * actor (runWithAuditContext), else `system`; or name the actor. Default false.
   */
  readonly audit?: boolean | { readonly actor: string };
}

export interface SystemTransaction {
  readonly reason: string;
  query<R = any>(text: string, values?: readonly unknown[]): Promise<{ rows: R[]; rowCount: number | null }>;
}

export interface SystemContextEvent {
  readonly reason: string;
  readonly write: boolean;
  readonly outcome: 'commit' | 'rollback';
  readonly statements: number;
  readonly durationMs: number;
}

export const SYSTEM_CHANNEL = 'linkbay-multitenant:system';
const systemChannel = diagnostics.channel(SYSTEM_CHANNEL);

/**
 * Privileged, cross-tenant work, named and recorded: the replacement for ad-hoc bypass pools.
 * `withSystemContext(adminPool, { reason }, fn)` runs `fn` in one transaction on the admin pool
 * (a role that bypasses RLS), READ ONLY unless `write: true`, outside any tenant's context, with
 * the reason readable in the database as `current_setting('linkbay.system_reason')` (for your
 * triggers and audit) and published on the `linkbay-multitenant:system` diagnostics channel when
 * it ends (for logs and metrics).
 *
 * @example
 * const totals = await withSystemContext(adminPool, { reason: 'monthly invoicing' }, async (sys) =>
 *   (await sys.query('SELECT tenant_id, sum(amount_cents) FROM orders GROUP BY 1')).rows);
 */
export async function withSystemContext<T>(pool: TenantPool, options: SystemContextOptions, fn: (sys: SystemTransaction) => Promise<T> | T): Promise<T> {
  const reason = options?.reason;
  if (typeof reason !== 'string' || reason.trim().length === 0 || reason.length > 200 || /[\u0000-\u001f\u007f]/.test(reason)) {
    throw new TypeError('`reason` must say why cross-tenant access is needed: 1 to 200 printable characters');
  }
  const write = options.write === true;
  const timeout = options.statementTimeoutMs;
  if (timeout !== undefined && !isTimeoutMs(timeout)) throw new TypeError(`\`statementTimeoutMs\` must be a positive integer (milliseconds) up to ${MAX_TIMEOUT_MS}`);
  const audit = options.audit ? auditContext({ ...(typeof options.audit === 'object' ? { actor: options.audit.actor } : {}), reason }) : undefined;
  const started = performance.now();
  return TenantContext.exit(async () => {
    const client = await connectClient(pool);
    const watch = watchClient(client);
    let statements = 0;
    let closed = false;
    let outcome: SystemContextEvent['outcome'] = 'rollback';
    let failure: ReleaseFailure | undefined;
    try {
      // Audited reads: the row is committed on its own before the work, so a cross-tenant read
      // leaves its trace even when the callback fails after reading. Audited writes: the row is in
      // the work's transaction (a rolled-back change left nothing to record).
      if (audit && !write) await writeAudit(client, { action: 'system-context', tenantId: null, after: { write }, context: audit });
      await client.query(write ? 'BEGIN' : 'BEGIN READ ONLY');
      await client.query(`SELECT set_config('linkbay.system_reason', $1, true)${timeout ? `, set_config('statement_timeout', '${timeout}', true)` : ''}`, [reason]);
      if (audit && write) await writeAudit(client, { action: 'system-context', tenantId: null, after: { write }, context: audit });
      const sys: SystemTransaction = {
        reason,
        async query(text, values) {
          if (closed) throw new Error('this system transaction has ended; use it only inside its callback');
          statements += 1;
          try {
            return await client.query(text, values as unknown[] | undefined);
          } catch (error) {
            throw mapDatabaseError(error);
          }
        },
      };
      const value = await fn(sys);
      closed = true;
      const commit = await client.query('COMMIT');
      if (commit?.command === 'ROLLBACK') throw new Error('the system transaction was rolled back: a statement in it failed');
      outcome = 'commit';
      return value;
    } catch (error) {
      closed = true;
      await settled(client);
      try {
        if (watch.error) failure = { reason: 'connection-error', error: watch.error };
        else if (client.getTransactionStatus?.() !== 'I') await client.query('ROLLBACK');
      } catch (rollbackError) {
        failure = { reason: 'rollback-failed', error: rollbackError };
      }
      throw error;
    } finally {
      watch.stop();
      releaseClient(client, '', failure);
      if (systemChannel.hasSubscribers) {
        systemChannel.publish({ reason, write, outcome, statements, durationMs: performance.now() - started } satisfies SystemContextEvent);
      }
    }
  });
}
