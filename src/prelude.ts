import { quoteLiteral, type TenancyConfig } from './config.js';
import type { BatchOptions, PrepareMode, PreludeStatement, StatementConfig } from './pipeline.js';
import type { TenantPool } from './pool.js';
import { classOf } from './plan-classes.js';
import { citusTenantStatement } from './citus/batch.js';
import { checkLimits, isTimeoutMs, limitValue, LIMIT_SETTINGS, MAX_TIMEOUT_MS, type TenantLimits } from './limits.js';
import { WRITE_GATE_SQL } from './write-gate.js';

/**
 * What a tenant transaction sends before the caller's first statement: BEGIN with its options, and
 * the tenant setting (`set_config(setting, id, true)`, the SET LOCAL of the tenant) with the local
 * statement timeout. Constant texts, so that named prepared statements are reused.
 */

export type IsolationLevel = 'read committed' | 'repeatable read' | 'serializable';

/** A query as `pool.query` takes it: text and values, or a config object. */
export type QueryInput = string | StatementConfig;

const ISOLATION_LEVELS: ReadonlySet<string> = new Set(['read committed', 'repeatable read', 'serializable']);

export function toStatement(query: QueryInput, values: readonly unknown[] | undefined): StatementConfig {
  if (typeof query === 'string') return { text: query, values: values ?? [] };
  if (query && typeof query === 'object' && typeof query.text === 'string') {
    return { ...query, values: values ?? query.values ?? [] };
  }
  throw new TypeError('query must be SQL text or an object with `text`');
}

export function beginStatement(options: { isolationLevel?: IsolationLevel; readOnly?: boolean }): PreludeStatement {
  let text = 'BEGIN';
  if (options.isolationLevel !== undefined) {
    if (!ISOLATION_LEVELS.has(options.isolationLevel)) {
      throw new TypeError('`isolationLevel` must be "read committed", "repeatable read" or "serializable"');
    }
    text += ` ISOLATION LEVEL ${options.isolationLevel.toUpperCase()}`;
  }
  if (options.readOnly) text += ' READ ONLY';
  return { text, values: [] };
}

/** The limits of a call: its `limits`, with `statementTimeoutMs` (the older option) on top. */
export function limitsOf(options: { readonly limits?: TenantLimits | undefined; readonly statementTimeoutMs?: number | undefined }): TenantLimits | undefined {
  if (options.statementTimeoutMs === undefined) return options.limits;
  return { ...options.limits, statementTimeoutMs: options.statementTimeoutMs };
}

/** Refuses a bad `statementTimeoutMs` before anything is sent (also for a nested call, which sends no prelude). */
export function checkStatementTimeout(ms: number | undefined): void {
  if (ms !== undefined && !isTimeoutMs(ms)) throw new TypeError(`\`statementTimeoutMs\` must be a positive integer (milliseconds) up to ${MAX_TIMEOUT_MS}`);
}

/**
 * `set_config(setting, $1, true)`: the SET LOCAL of the tenant, the write gate of tenant moves
 * (src/write-gate.ts), plus the transaction-local limits (src/limits.ts: statement_timeout,
 * lock_timeout, idle_in_transaction_session_timeout, work_mem), all in the one statement that
 * already rides with the caller's first statement.
 */
export function tenantStatement(
  tenancy: TenancyConfig,
  tenantId: string,
  limits: TenantLimits | undefined,
  readOnly: boolean,
  customPlans = false,
): PreludeStatement {
  // Citus: SET LOCAL through linkbay.set_tenant, the form Citus propagates to the workers.
  if (tenancy.engine === 'citus') return citusTenantStatement(tenantId, limits?.statementTimeoutMs, customPlans);
  const values = [tenantId];
  let present = 0;
  if (limits) {
    checkLimits(limits);
    LIMIT_SETTINGS.forEach(({ key }, i) => {
      const value = limits[key];
      if (value === undefined) return;
      present |= 1 << i;
      values.push(limitValue(key, value));
    });
  }
  return { text: tenantStatementText(tenancy.setting, present, readOnly, customPlans), values };
}

// The texts, built once per (setting, variant): on every statement's path.
const texts = new Map<string, string[]>();

function tenantStatementText(setting: string, limits: number, readOnly: boolean, customPlans: boolean): string {
  let variants = texts.get(setting);
  if (!variants) {
    if (texts.size > 100) texts.clear();
    texts.set(setting, (variants = []));
  }
  const key = limits | (readOnly ? 1 << LIMIT_SETTINGS.length : 0) | (customPlans ? 2 << LIMIT_SETTINGS.length : 0);
  let text = variants[key];
  if (text !== undefined) return text;
  // The write gate of tenant moves (src/write-gate.ts): READ ONLY while a move holds the tenant.
  text = `SELECT set_config(${quoteLiteral(setting)}, $1, true), ${WRITE_GATE_SQL}`;
  let parameter = 2;
  LIMIT_SETTINGS.forEach(({ setting: name }, i) => {
    if (limits & (1 << i)) text += `, set_config('${name}', $${parameter++}, true)`;
  });
  // Without an explicit BEGIN (tenantQuery) READ ONLY is set for the implicit transaction this way;
  // lowering to read-only is allowed at any point of a transaction.
  if (readOnly) text += `, set_config('transaction_read_only', 'on', true)`;
  // Named statements with parameters are then planned at each execution, with this tenant's
  // setting and values, instead of reusing a generic plan made for another tenant (prepare 'tenant').
  if (customPlans) text += `, set_config('plan_cache_mode', 'force_custom_plan', true)`;
  variants[key] = text;
  return text;
}

/** The prepare mode with the tenant's plan class (src/plan-classes.ts) when it is 'tenant'. */
export function batchOptions(pool: TenantPool, tenantId: string, prepare: PrepareMode): BatchOptions | Promise<BatchOptions> {
  if (prepare !== 'tenant') return { prepare, tenantId };
  const planClass = classOf(pool, tenantId);
  return typeof planClass === 'object' ? planClass.then((c) => ({ prepare, planClass: c, tenantId })) : { prepare, planClass, tenantId };
}

/** 'tenant' without plan classes: named statements are planned at each execution instead. */
export function forceCustomPlans(batch: BatchOptions): boolean {
  return batch.prepare === 'tenant' && batch.planClass === undefined;
}

export function prepareMode(option: PrepareMode | boolean | undefined): PrepareMode {
  if (option === undefined) return 'tenant';
  if (option === true) return 'all';
  if (option === false) return 'none';
  if (option === 'tenant' || option === 'all' || option === 'none') return option;
  throw new TypeError('`prepare` must be "tenant", "all", "none" or a boolean');
}
