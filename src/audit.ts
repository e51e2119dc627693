import { DEFAULT_TENANCY, type TenancyConfig } from './config.js';
import { InvalidTenantIdError, TenantInputError } from './errors.js';
import type { Queryable } from './pool.js';
import { redactUrl } from './redact-url.js';
import { canonicalTenantId } from './tenant-id.js';
import { currentAuditContext } from './audit-context.js';
import type { Tenant } from './tenants.js';

/**
 * What the audit log records (`linkbay.audit_log`, sql/00003-tenant-lifecycle.sql). Each row is
 * written in the same transaction as the change it records, through the admin role.
 */
export const AUDIT_ACTIONS = [
  'create', // the registry row inserted (status provisioning while an onboarding runs, else active)
  'onboarded', // every onboarding step succeeded: provisioning → active
  'onboarding-failed', // a step failed: everything done before it undone, the registry row removed
  'update',
  'suspend',
  'activate',
  'delete',
  'purge',
  'export',
  'import',
  'move-started',
  'move-succeeded',
  'move-failed',
  'system-context', // withSystemContext with `audit`: cross-tenant work, its reason
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

/** Who asks for an admin action, and why. Both optional; `actor` defaults to `system`. */
export interface AuditContext {
  /** 1 to 200 printable characters: a user name, a token's name, a service. Default `system`. */
  readonly actor?: string;
  /** Why: up to 500 printable characters. */
  readonly reason?: string;
}

/** One row of the audit log. */
export interface AuditEntry {
  /** Increasing with each row written; the `after` cursor of the next page. */
  readonly id: string;
  readonly occurredAt: Date;
  readonly actor: string;
  readonly action: AuditAction;
  /** The tenant acted on (canonical id), null for work not about one tenant. */
  readonly tenantId: string | null;
  /** The tenant as it was, and as it is after the action; database URLs without their password. */
  readonly before: Record<string, unknown> | null;
  readonly after: Record<string, unknown> | null;
  readonly reason: string | null;
}

export interface AuditFilter {
  readonly tenantId?: string;
  readonly action?: string;
  readonly actor?: string;
  /** From this moment on (inclusive). */
  readonly since?: Date;
  /** Before this moment (exclusive). */
  readonly until?: Date;
  /** 1 to 1000, default 100. */
  readonly limit?: number;
  /** The `next` of the previous page. */
  readonly after?: string;
}

export interface AuditPage {
  /** Newest first. */
  readonly entries: readonly AuditEntry[];
  /** Pass as `after` for the next (older) page; absent on the last page. */
  readonly next?: string;
}

/** What `tailAudit` returns: the next rows in commit order, and where to go on from. */
export interface AuditTail {
  /** Oldest first, in the order their transactions ended (at most `limit`). */
  readonly entries: readonly AuditEntry[];
  /** Pass as `after` on the next call: always present (the same cursor when there was nothing new). */
  readonly next: string;
}

export interface AuditRecord {
  readonly action: AuditAction;
  readonly tenantId: string | null;
  readonly before?: unknown;
  readonly after?: unknown;
  readonly context?: AuditContext;
}

// No control (C0, C1: a latin1 header byte 0x85 or 0x9b becomes NEL or CSI) or format characters
// (bidi overrides, zero-width), nor line and paragraph separators: an audit trail shown in a
// terminal or a UI must read as it was written.
// Nor a lone surrogate (\p{Cs}), which would be written to the database as U+FFFD.
const PRINTABLE = /^[^\p{Cc}\p{Cf}\p{Cs}\u2028\u2029]*$/u;

/** Whether `actor` is one the audit log accepts: 1 to 200 printable characters, not only spaces. */
export function isAuditActor(actor: unknown): actor is string {
  return typeof actor === 'string' && actor.trim().length > 0 && actor.length <= 200 && PRINTABLE.test(actor);
}

/**
 * The actor and reason checked (TenantInputError naming the field): each as given, else the current
 * scope's (runWithAuditContext, set by the admin routers), else actor `system` and no reason.
 */
export function auditContext(given: AuditContext | undefined): { readonly actor: string; readonly reason?: string } {
  const scope = currentAuditContext();
  const actor = given?.actor ?? scope?.actor ?? 'system';
  if (!isAuditActor(actor)) {
    throw new TenantInputError('`actor` must be 1 to 200 printable characters');
  }
  const reason = given?.reason ?? scope?.reason ?? null;
  if (reason !== null && (typeof reason !== 'string' || reason.length > 500 || !PRINTABLE.test(reason))) {
    throw new TenantInputError('`reason` must be at most 500 printable characters');
  }
  return reason === null || reason.trim() === '' ? { actor } : { actor, reason };
}

/** A tenant as the audit log keeps it: its database URL without the password. */
export function auditedTenant(tenant: Tenant | undefined | null): Record<string, unknown> | null {
  if (!tenant) return null;
  return { ...tenant, databaseUrl: tenant.databaseUrl ? redactUrl(tenant.databaseUrl) : null };
}

/** Inserts one audit row on `tx`: call it inside the transaction of the change it records. */
export async function writeAudit(tx: Queryable, record: AuditRecord): Promise<void> {
  const { actor, reason } = auditContext(record.context);
  await tx.query(
    `INSERT INTO linkbay.audit_log (actor, action, subject_tenant, before, after, reason) VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6)`,
    [actor, record.action, record.tenantId, json(record.before), json(record.after), reason ?? null],
  );
}

function json(value: unknown): string | null {
  return value === undefined || value === null ? null : JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
}

/**
 * The audit log, newest first, `limit` rows at a time (keyset pagination on the row id), filtered by
 * tenant, action, actor and time. Invalid filters are TenantInputError naming the field.
 */
export async function listAudit(db: Queryable, filter: AuditFilter = {}, tenancy: TenancyConfig = DEFAULT_TENANCY): Promise<AuditPage> {
  const limit = filter.limit ?? 100;
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > 1000) throw new TenantInputError('`limit` must be an integer from 1 to 1000');
  let tenant: string | null = null;
  if (filter.tenantId !== undefined) {
    try {
      tenant = canonicalTenantId(filter.tenantId, tenancy.tenantIdType);
    } catch (error) {
      throw new TenantInputError('`tenant` must be a tenant id', { cause: error instanceof InvalidTenantIdError ? error : undefined });
    }
  }
  if (filter.action !== undefined && !(AUDIT_ACTIONS as readonly string[]).includes(filter.action)) {
    throw new TenantInputError(`\`action\` must be one of ${AUDIT_ACTIONS.join(', ')}`);
  }
  if (filter.actor !== undefined && (typeof filter.actor !== 'string' || filter.actor.length === 0 || filter.actor.length > 200)) {
    throw new TenantInputError('`actor` must be 1 to 200 characters');
  }
  for (const key of ['since', 'until'] as const) {
    const value = filter[key];
    if (value !== undefined && (!(value instanceof Date) || Number.isNaN(value.getTime()))) throw new TenantInputError(`\`${key}\` must be a date-time (ISO 8601)`);
  }
  if (filter.after !== undefined && !/^[1-9]\d{0,18}$/.test(filter.after)) throw new TenantInputError('`after` must be the `next` of a previous page');
  const { rows } = await db.query(
    `SELECT a.id::text AS id, a.occurred_at, a.actor, a.action, a.subject_tenant, a.before, a.after, a.reason FROM linkbay.audit_log a
      WHERE ($1::text IS NULL OR a.subject_tenant = $1)
        AND ($2::text IS NULL OR a.action = $2)
        AND ($3::text IS NULL OR a.actor = $3)
        AND ($4::timestamptz IS NULL OR a.occurred_at >= $4)
        AND ($5::timestamptz IS NULL OR a.occurred_at < $5)
        AND ($6::bigint IS NULL OR a.id < $6)
      -- The column, not the text output of the same name (which would sort '10' before '9').
      ORDER BY a.id DESC
      LIMIT ${limit + 1}`,
    [tenant, filter.action ?? null, filter.actor ?? null, filter.since ?? null, filter.until ?? null, filter.after ?? null],
  );
  const entries = rows.slice(0, limit).map(toEntry);
  return rows.length > limit ? { entries, next: entries[entries.length - 1]!.id } : { entries };
}

const TAIL_CURSOR = /^(0|[1-9]\d{0,19})\.(0|[1-9]\d{0,18})$/;

/**
 * The audit log for a consumer that follows it (a SIEM export, a webhook relay): the rows after
 * `after` (the `next` of the previous call; none: from the beginning), oldest first, `limit` (1–1000,
 * default 100) at a time, in an order that misses nothing. `listAudit` is for people: newest first by
 * id, where a long transaction's row (ids are taken at INSERT) appears after rows with greater ids,
 * so a consumer that polled it by id or by time would have passed it. Here only rows whose
 * transaction ended before every transaction still running are served, by their transaction's id
 * (sql/00005-audit-commit-order.sql): no row can appear later before the cursor. The price: while a
 * write transaction runs (anywhere on the server), the rows written after it began wait for it.
 */
export async function tailAudit(db: Queryable, options: { readonly after?: string; readonly limit?: number } = {}): Promise<AuditTail> {
  const limit = options.limit ?? 100;
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > 1000) throw new TenantInputError('`limit` must be an integer from 1 to 1000');
  const cursor = options.after === undefined ? undefined : TAIL_CURSOR.exec(options.after);
  if (options.after !== undefined && !cursor) throw new TenantInputError('`after` must be the `next` of a previous call');
  const { rows } = await db.query(
    `SELECT a.tx::text AS tx, a.id::text AS id, a.occurred_at, a.actor, a.action, a.subject_tenant, a.before, a.after, a.reason FROM linkbay.audit_log a
      WHERE a.tx < pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())
        AND ($1::xid8 IS NULL OR (a.tx, a.id) > ($1::xid8, $2::bigint))
      ORDER BY a.tx, a.id
      LIMIT ${limit}`,
    [cursor?.[1] ?? null, cursor?.[2] ?? null],
  );
  const entries = rows.map(toEntry);
  const last = rows[rows.length - 1];
  return { entries, next: last ? `${last.tx}.${last.id}` : (options.after ?? '0.0') };
}

function toEntry(row: Record<string, any>): AuditEntry {
  return {
    id: row.id,
    occurredAt: row.occurred_at,
    actor: row.actor,
    action: row.action,
    tenantId: row.subject_tenant,
    before: row.before,
    after: row.after,
    reason: row.reason,
  };
}
