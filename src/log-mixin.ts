import { TenantContext } from './context.js';

/**
 * The current tenant for a log line: `{ tenant_id }` inside a tenant scope (a request, a job), `{}`
 * outside one. The shape of pino's `mixin` option, so every line carries its tenant; any logger that
 * merges an object per line can call it.
 *
 * @example
 * const log = pino({ mixin: tenantLogMixin });
 * log.info('invoice sent'); // {"level":30,"tenant_id":"6f9619ff-...","msg":"invoice sent"}
 */
export function tenantLogMixin(): { tenant_id?: string } {
  const tenantId = TenantContext.getTenantId();
  return tenantId === undefined ? {} : { tenant_id: tenantId };
}
