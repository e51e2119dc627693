import type { Context, Middleware } from 'koa';
import type { TenantAdminService } from '../admin.js';
import { runWithAuditContext } from '../audit-context.js';
import { auditContext } from '../audit.js';
import { TenantInputError } from '../errors.js';
import type { GuardedRouter } from './guarded-router.js';

/** The request header whose value is the audit row's reason (optional, up to 500 printable characters). */
export const AUDIT_REASON_HEADER = 'X-Audit-Reason';

/**
 * Who the request is, for the audit log. Default: `ctx.state.actor` (requireBearerToken sets it to
 * the matched token's `actor`), else `admin`.
 */
export type AuditActor = (ctx: Context) => string | undefined;

/**
 * Runs the rest of an admin request in an audit scope (runWithAuditContext): its actor, and its
 * reason from the `X-Audit-Reason` header. A header, not a body field, so that every route (DELETE,
 * a streamed import, a bodiless suspend) takes one the same way. Mounted after `authorize`, which
 * may set `ctx.state.actor`. A reason or actor that is not printable text is 422 naming it.
 */
export function auditScope(actor?: AuditActor): Middleware {
  return async function auditScope(ctx, next) {
    const named = actor ? actor(ctx) : typeof ctx.state.actor === 'string' ? ctx.state.actor : undefined;
    const reason = headerText(ctx.get(AUDIT_REASON_HEADER)) || undefined;
    let context;
    try {
      context = auditContext({ actor: named ?? 'admin', ...(reason ? { reason } : {}) });
    } catch (error) {
      if (error instanceof TenantInputError && error.message.startsWith('`reason`')) {
        throw new TenantInputError(`\`${AUDIT_REASON_HEADER}\` must be at most 500 printable characters`);
      }
      throw error;
    }
    await runWithAuditContext(context, next);
  };
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * A header's text. Node hands header bytes over as latin1, one character per byte, while clients
 * (curl -H, browsers' fetch) send non-ASCII text as its UTF-8 bytes: read as latin1, `ü` would be
 * recorded as `Ã¼` and an en dash refused as C1 controls. Bytes that are not UTF-8 are 422.
 */
function headerText(value: string): string {
  if (!/[^\x00-\x7f]/.test(value)) return value;
  try {
    return utf8.decode(Buffer.from(value, 'latin1'));
  } catch {
    throw new TenantInputError(`\`${AUDIT_REASON_HEADER}\` must be UTF-8 text`);
  }
}

const one = (value: string | string[] | undefined) => (Array.isArray(value) ? value[0] : value);
// ISO 8601 date-time with a zone (or a date alone): what `since` and `until` accept.
const DATE_TIME = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2}))?$/;

function dateParameter(ctx: Context, name: 'since' | 'until'): Date | undefined {
  const text = one(ctx.query[name]);
  if (text === undefined) return undefined;
  const date = DATE_TIME.test(text) ? new Date(text) : new Date(Number.NaN);
  if (Number.isNaN(date.getTime())) throw new TenantInputError(`\`${name}\` must be an ISO 8601 date-time with a time zone, e.g. 2026-01-31T12:00:00Z`);
  return date;
}

/**
 * `GET /audit` on an admin router: the audit log, newest first, filtered by `tenant`, `action`,
 * `actor`, `since` and `until` (ISO 8601), `limit` rows at a time (1 to 1000, default 100), the next
 * page by `after` (the `next` of the page before). 422 names an invalid filter.
 */
export function addAuditRoute(router: GuardedRouter, service: TenantAdminService): void {
  router.get('listAudit', '/audit', async (ctx) => {
    const limitText = one(ctx.query.limit);
    const tenant = one(ctx.query.tenant);
    const action = one(ctx.query.action);
    const actor = one(ctx.query.actor);
    const after = one(ctx.query.after);
    const since = dateParameter(ctx, 'since');
    const until = dateParameter(ctx, 'until');
    const page = await service.listAudit({
      ...(tenant !== undefined ? { tenantId: tenant } : {}),
      ...(action !== undefined ? { action } : {}),
      ...(actor !== undefined ? { actor } : {}),
      ...(since ? { since } : {}),
      ...(until ? { until } : {}),
      ...(after !== undefined ? { after } : {}),
      ...(limitText !== undefined ? { limit: /^\d{1,4}$/.test(limitText) ? Number(limitText) : Number.NaN } : {}),
    });
    ctx.set('Cache-Control', 'no-store');
    ctx.body = page;
  });
  // Registered after /audit, and a path of its own: never read as a filter of the list.
  router.get('tailAudit', '/audit/tail', async (ctx) => {
    const limitText = one(ctx.query.limit);
    const after = one(ctx.query.after);
    const tail = await service.tailAudit({
      ...(after !== undefined ? { after } : {}),
      ...(limitText !== undefined ? { limit: /^\d{1,4}$/.test(limitText) ? Number(limitText) : Number.NaN } : {}),
    });
    ctx.set('Cache-Control', 'no-store');
    ctx.body = tail;
  });
}
