/**
 * Per-tenant limits, set transaction-locally in the prelude that already carries the tenant: no
 * round trip of their own. A plan's limits (e.g. `free` gets 2 s per statement, `pro` 30 s) keep one
 * tenant's heavy query from holding connections the others need; a limit hit is a
 * TenantLimitError (503, `Retry-After` through Koa), not a generic 500.
 */
export interface TenantLimits {
  /** `statement_timeout`, milliseconds: a statement running longer is cancelled. */
  readonly statementTimeoutMs?: number;
  /** `lock_timeout`, milliseconds: waiting longer for a lock fails the statement. */
  readonly lockTimeoutMs?: number;
  /** `idle_in_transaction_session_timeout`, milliseconds: a transaction left idle longer ends its session. */
  readonly idleInTransactionTimeoutMs?: number;
  /** `work_mem`, e.g. `'4MB'`: memory per sort or hash before spilling to disk. */
  readonly workMem?: string;
}

/** Limits by the tenant's plan (the registry's `plan`), with `default` for plans not listed. */
export interface PlanLimits {
  readonly plans?: Readonly<Record<string, TenantLimits>>;
  readonly default?: TenantLimits;
}

/** The settings, in the order they are sent, each with how its value is written. */
export const LIMIT_SETTINGS = [
  { key: 'statementTimeoutMs', setting: 'statement_timeout' },
  { key: 'lockTimeoutMs', setting: 'lock_timeout' },
  { key: 'idleInTransactionTimeoutMs', setting: 'idle_in_transaction_session_timeout' },
  { key: 'workMem', setting: 'work_mem' },
] as const satisfies ReadonlyArray<{ key: keyof TenantLimits; setting: string }>;

const MEMORY = /^[1-9]\d{0,6}(kB|MB|GB)$/;

/** The largest timeout PostgreSQL takes (an int of milliseconds): above it every SET fails (22023). */
export const MAX_TIMEOUT_MS = 2_147_483_647;

/** Whether `value` is a timeout PostgreSQL takes: an integer of 1 to MAX_TIMEOUT_MS milliseconds. */
export function isTimeoutMs(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 1 && value <= MAX_TIMEOUT_MS;
}

/** Throws a TypeError naming the option when a limit is malformed (before anything is sent). */
export function checkLimits(limits: TenantLimits | undefined, where = 'limits'): void {
  if (limits === undefined) return;
  if (limits === null || typeof limits !== 'object') throw new TypeError(`\`${where}\` must be an object`);
  for (const key of Object.keys(limits)) {
    const known = LIMIT_SETTINGS.find((s) => s.key === key);
    if (!known) throw new TypeError(`\`${where}.${key}\` is not a limit (statementTimeoutMs, lockTimeoutMs, idleInTransactionTimeoutMs, workMem)`);
    const value = limits[key as keyof TenantLimits];
    if (value === undefined) continue;
    if (key === 'workMem') {
      if (typeof value !== 'string' || !MEMORY.test(value)) throw new TypeError(`\`${where}.workMem\` must be like '4MB' (kB, MB or GB)`);
    } else if (!isTimeoutMs(value)) {
      throw new TypeError(`\`${where}.${key}\` must be a positive integer (milliseconds) up to ${MAX_TIMEOUT_MS}`);
    }
  }
}

export function checkPlanLimits(planLimits: PlanLimits | undefined): void {
  if (planLimits === undefined) return;
  if (planLimits === null || typeof planLimits !== 'object') throw new TypeError('`planLimits` must be an object');
  checkLimits(planLimits.default, 'planLimits.default');
  for (const [plan, limits] of Object.entries(planLimits.plans ?? {})) checkLimits(limits, `planLimits.plans.${plan}`);
}

/** The value sent for one limit: milliseconds with their unit, memory as given. */
export function limitValue(key: keyof TenantLimits, value: number | string): string {
  return key === 'workMem' ? String(value) : `${value}ms`;
}

/** A plan's limits under `planLimits`, then `own` on top (a call's or a handle's). */
export function limitsFor(planLimits: PlanLimits | undefined, plan: string | undefined, own: TenantLimits | undefined): TenantLimits | undefined {
  const byPlan = planLimits ? ((plan !== undefined ? planLimits.plans?.[plan] : undefined) ?? planLimits.default) : undefined;
  if (!byPlan) return own;
  return own ? { ...byPlan, ...own } : byPlan;
}
