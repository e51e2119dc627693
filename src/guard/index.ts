import { loadModule, parseSync, type ParseResult } from 'libpg-query';
import QuickLRU from 'quick-lru';
import { DEFAULT_TENANCY, type TenancyConfig } from '../config.js';
import { TenantContext } from '../context.js';
import { tryCanonicalTenantId } from '../tenant-id.js';
import type { StatementGuard } from '../transaction.js';
import { Analysis, GuardBudgetExceeded } from './analysis.js';
import { countTokens } from './tokens.js';
import { activeBypass } from './bypass.js';
import { readGuardCatalog, staticGuardCatalog, type CatalogQueryable, type GuardCatalog, type StaticTableInput } from './catalog.js';
import { TenantGuardError, type GuardViolation } from './errors.js';
import { guardBlockedChannel, guardBypassChannel, type GuardBypassEvent, type GuardViolationEvent } from './events.js';
import { PreparedNames } from './prepared-names.js';
import { analyzeParsed } from './statements.js';
import { evaluateVerdict, type Verdict } from './verdict.js';

export interface QueryGuardOptions {
  /**
   * Where the guarded tables are read from (pg_catalog), as this pool's role sees them: pass the
   * application's pool, so unqualified names resolve through its search path. Either `pool` or
   * `tables` is required.
   */
  readonly pool?: CatalogQueryable;
  /** Guarded tables given by hand instead of read from the catalog (`schema.table` or `table`). */
  readonly tables?: readonly StaticTableInput[];
  /** With `tables`: the search path unqualified names resolve through. Default `['pg_catalog', 'public']`. */
  readonly searchPath?: readonly string[];
  /** Setting name, tenant id type, tenant column(s). Default: `defineTenancy()` defaults. */
  readonly tenancy?: TenancyConfig;
  /** Tables never guarded (`schema.table`, or `table` for `public.table`). */
  readonly exemptTables?: Iterable<string>;
  /** Also guard tables that RLS protects (defence in depth). Default false. */
  readonly guardRlsTables?: boolean;
  /** true: refuse unsafe statements with TenantGuardError before they are sent. false: report them and let them run. Default true. */
  readonly strictMode?: boolean;
  /** Called for every violation found, in both modes (in strict mode before the throw). A throw from it propagates. */
  readonly onViolation?: (event: GuardViolationEvent) => void;
  /** Called for every statement that ran unchecked inside `withAdminBypass`. */
  readonly onBypass?: (event: GuardBypassEvent) => void;
  /** Verdicts kept, by exact SQL text (quick-lru; up to twice this many briefly). Default 1000. */
  readonly cacheSize?: number;
  /**
   * Longest statement text (in characters) the guard analyses; longer ones are refused
   * (`LBMT_GUARD_TOO_COMPLEX`) before they are parsed, since parsing cannot be interrupted and
   * holds the event loop (about 0.2 µs a character). Default 32768.
   */
  readonly maxTextLength?: number;
  /**
   * Most tokens (words, numbers, parameters, quoted strings, operators; src/guard/tokens.ts) a
   * statement may have to be parsed; more are refused (`LBMT_GUARD_TOO_COMPLEX`) before parsing,
   * which cannot be interrupted and costs about 1–3 µs a token (bench/RESULTS.md): the default
   * keeps any first verdict's parse within a few milliseconds. Long lists belong in one array
   * parameter (`= ANY($2)`, `unnest($2::int[])`). Default 2000.
   */
  readonly maxTokens?: number;
  /**
   * Work the analysis of one statement may do (expression nodes walked, conditions resolved, facts
   * propagated), so that no first verdict holds the event loop for more than a few milliseconds;
   * beyond it the statement is refused (`LBMT_GUARD_TOO_COMPLEX`). Default 50000 (a 300-table
   * join chained through tenant equalities takes about a third of it).
   */
  readonly maxAnalysisSteps?: number;
}

/** A high surrogate not followed by a low one, or a low one not preceded by a high one. */
const UNPAIRED_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

const SAFE: Verdict = Object.freeze({ violations: Object.freeze([]), requirements: Object.freeze([]) });

/** A pool as `wrap` needs it: pg.Pool, or anything shaped like it. */
export interface GuardablePool<C extends GuardableClient = GuardableClient> {
  query(config: any, values?: any): Promise<any>;
  connect(): Promise<C>;
}

export interface GuardableClient {
  query(config: any, values?: any): Promise<any>;
  release(destroy?: Error | boolean): void;
}

/** What `wrap` returns: every statement is checked with TenantContext's tenant before it is sent. */
export interface GuardedPool {
  query(config: string | { text: string; values?: readonly unknown[] }, values?: readonly unknown[]): Promise<any>;
  connect(): Promise<GuardedClient>;
}

export interface GuardedClient {
  query(config: string | { text: string; values?: readonly unknown[] }, values?: readonly unknown[]): Promise<any>;
  release(destroy?: Error | boolean): void;
}

/**
 * The SQL guard (the seed's TenantQueryInterceptor): refuses statements that could read or write
 * another tenant's rows of tables RLS does not protect, deciding per table reference on
 * PostgreSQL's own parse tree. See docs/guard.md for what is checked and its limits.
 * Create it with `createQueryGuard`, which loads the parser and the catalog first.
 */
export class TenantQueryGuard implements StatementGuard {
  readonly strictMode: boolean;
  private catalogState: GuardCatalog;
  private readonly cache: QuickLRU<string, Verdict>;
  private readonly tenancy: TenancyConfig;
  private readonly setting: string;
  private readonly maxTextLength: number;
  private readonly maxAnalysisSteps: number;
  private readonly maxTokens: number;

  /** @internal Use `createQueryGuard`: the parser must be loaded before the first check. */
  constructor(
    private readonly options: QueryGuardOptions,
    catalog: GuardCatalog,
  ) {
    this.tenancy = options.tenancy ?? DEFAULT_TENANCY;
    this.setting = this.tenancy.setting.toLowerCase();
    this.strictMode = options.strictMode ?? true;
    const cacheSize = options.cacheSize ?? 1000;
    if (!Number.isSafeInteger(cacheSize) || cacheSize < 1) throw new TypeError('`cacheSize` must be a positive integer');
    this.maxTextLength = positiveInteger(options.maxTextLength ?? 32_768, 'maxTextLength');
    this.maxAnalysisSteps = positiveInteger(options.maxAnalysisSteps ?? 50_000, 'maxAnalysisSteps');
    this.maxTokens = positiveInteger(options.maxTokens ?? 2_000, 'maxTokens');
    this.cache = new QuickLRU({ maxSize: cacheSize });
    this.catalogState = catalog;
  }

  /** The guarded tables and search path the verdicts are based on. */
  get catalog(): GuardCatalog {
    return this.catalogState;
  }

  /**
   * Checks one statement for `tenantId` before it is sent: returns when it is safe; otherwise
   * reports it and, in strict mode, throws TenantGuardError. Synchronous; verdicts are cached by
   * the exact text, and only the parameter positions a verdict names are compared per call.
   */
  check(text: string, values: readonly unknown[] = [], tenantId?: string): void {
    const bypass = activeBypass();
    if (bypass) {
      this.reportBypass(text, tenantId, bypass.reason);
      return;
    }
    const verdict = this.verdict(text);
    if (verdict === SAFE || (verdict.violations.length === 0 && verdict.requirements.length === 0)) return;
    const violations = evaluateVerdict(verdict, values, tenantId, this.tenancy.tenantIdType);
    if (violations.length > 0) this.refuse(text, tenantId, violations);
  }

  /** Reports violations and, in strict mode, throws. */
  private refuse(text: string, tenantId: string | undefined, violations: readonly GuardViolation[]): void {
    const event: GuardViolationEvent = { text, tenantId, violations, blocked: this.strictMode };
    this.options.onViolation?.(event);
    if (guardBlockedChannel.hasSubscribers) guardBlockedChannel.publish(event);
    if (this.strictMode) throw new TenantGuardError(violations);
  }

  /** The violations `check` would find, without reporting or throwing. */
  inspect(text: string, values: readonly unknown[] = [], tenantId?: string): readonly GuardViolation[] {
    return evaluateVerdict(this.verdict(text), values, tenantId, this.tenancy.tenantIdType);
  }

  /** The cached analysis of a text (what holds whatever the values, and what is checked per execution). */
  verdict(text: string): Verdict {
    if (typeof text !== 'string') throw new TypeError('the statement text must be a string');
    const cached = this.cache.get(text);
    if (cached) return cached;
    const verdict = this.analyze(text);
    // Texts past maxTextLength are refused at once (no parse); keeping them would let a caller
    // fill the cache with arbitrarily large strings.
    if (text.length <= this.maxTextLength) this.cache.set(text, verdict);
    return verdict;
  }

  /** Re-reads the catalog (after a migration) and forgets every cached verdict. */
  async refresh(): Promise<void> {
    if (this.options.pool) this.catalogState = await readGuardCatalog(this.options.pool, this.options);
    this.cache.clear();
  }

  /**
   * A pool-shaped view of `pool` whose statements (`query`, and `query` of the clients `connect`
   * gives) are checked for TenantContext's tenant before they are sent. Nothing of `pool` is
   * patched. For tenant transactions use the `guard` option of withTenantTransaction instead:
   * their own BEGIN/COMMIT would be refused here.
   *
   * @example
   * const db = guard.wrap(pool);
   * await runWithTenantContext(tenantId, () => db.query('SELECT * FROM legacy_notes WHERE tenant_id = $1', [tenantId]));
   */
  wrap(pool: GuardablePool): GuardedPool {
    const prepared = new PreparedNames();
    const checked = <R>(config: unknown, values: readonly unknown[] | undefined, send: () => Promise<R>): Promise<R> => {
      try {
        const text = typeof config === 'string' ? config : (config as { text?: unknown } | null)?.text;
        if (typeof text !== 'string') throw new TypeError('query must be SQL text or an object with `text`');
        const given = values ?? (config as { values?: readonly unknown[] }).values ?? [];
        const tenantId = this.contextTenant();
        const name = typeof config === 'object' ? (config as { name?: unknown }).name : undefined;
        const refusal = prepared.refusal(name, text);
        if (refusal) this.refuse(text, tenantId, [{ reason: refusal, location: 0 }]);
        this.check(text, given, tenantId);
      } catch (error) {
        return Promise.reject(error);
      }
      return send();
    };
    return {
      query: (config, values) => checked(config, values, () => pool.query(config, values)),
      connect: async () => {
        const client = await pool.connect();
        return {
          query: (config, values) => checked(config, values, () => client.query(config, values)),
          release: (destroy) => client.release(destroy),
        };
      },
    };
  }

  private contextTenant(): string | undefined {
    const raw = TenantContext.getTenantId();
    return raw === undefined ? undefined : tryCanonicalTenantId(raw, this.tenancy.tenantIdType);
  }

  private analyze(text: string): Verdict {
    if (text.trim().length === 0) return SAFE;
    const context = { setting: this.setting, tenantIdType: this.tenancy.tenantIdType };
    const analysis = new Analysis(this.catalogState, context, text, this.maxAnalysisSteps);
    if (text.length > this.maxTextLength) {
      analysis.refuseTooComplex(`the statement is longer than maxTextLength (${this.maxTextLength} characters) and is not analysed; send smaller statements (or raise maxTextLength)`);
      return analysis.verdict();
    }
    if (this.catalogState.lexingMismatch) {
      analysis.refuse(`${this.catalogState.lexingMismatch}; every statement is refused (fix the setting, then refresh())`, undefined);
      return analysis.verdict();
    }
    const nul = text.indexOf('\0');
    if (nul >= 0) {
      // The parser reads up to the NUL and ignores the rest: `SELECT 1\0; DELETE FROM t` would be judged as `SELECT 1`.
      analysis.refuse('the statement text contains a NUL character: the parser would stop there and not check what follows', Buffer.byteLength(text.slice(0, nul)));
      return analysis.verdict();
    }
    const surrogate = text.search(UNPAIRED_SURROGATE);
    if (surrogate >= 0) {
      // The parser's UTF-8 encoder miscounts unpaired surrogates and cuts the end of the text
      // (`... -- \uD800é...\nOR true` is judged without its last line), while the wire encodes them
      // as U+FFFD and sends everything: the two would not read the same statement.
      analysis.refuse('the statement text contains an unpaired UTF-16 surrogate (not valid Unicode): the parser and the server would not read the same text', Buffer.byteLength(text.slice(0, surrogate)));
      return analysis.verdict();
    }
    if (countTokens(text, this.maxTokens) > this.maxTokens) {
      analysis.refuseTooComplex(`the statement has more than maxTokens (${this.maxTokens}) tokens and is not parsed (parsing holds the event loop); send smaller statements, pass long lists as one array parameter (= ANY($2)), or raise maxTokens`);
      return analysis.verdict();
    }
    let parsed: ParseResult;
    try {
      parsed = parseSync(text);
    } catch (error) {
      const details = (error as { sqlDetails?: { cursorPosition?: number } }).sqlDetails;
      analysis.refuse(`the statement does not parse: ${(error as Error).message}`, details?.cursorPosition);
      return analysis.verdict();
    }
    try {
      analyzeParsed(parsed, analysis);
    } catch (error) {
      // Fail closed on anything the walk cannot handle: a statement past the analysis budget, or
      // expressions nested beyond the stack.
      const fresh = new Analysis(this.catalogState, context, text);
      if (error instanceof GuardBudgetExceeded) {
        fresh.refuseTooComplex(`the statement is too complex to check within maxAnalysisSteps (${this.maxAnalysisSteps}): refused; split it into smaller statements`);
      } else if (error instanceof RangeError) {
        fresh.refuseTooComplex('the statement is nested too deeply to check (the analysis ran out of stack): refused; split it into smaller statements');
      } else {
        fresh.refuse(`the statement could not be analysed (${(error as Error).name}): refused`, 0);
      }
      return fresh.verdict();
    }
    return analysis.violations.length === 0 && analysis.requirements.length === 0 ? SAFE : analysis.verdict();
  }

  private reportBypass(text: string, tenantId: string | undefined, reason: string | undefined): void {
    if (!this.options.onBypass && !guardBypassChannel.hasSubscribers) return;
    const event: GuardBypassEvent = { text, tenantId, reason };
    this.options.onBypass?.(event);
    if (guardBypassChannel.hasSubscribers) guardBypassChannel.publish(event);
  }
}

function positiveInteger(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new TypeError(`\`${name}\` must be a positive integer`);
  return value;
}

/**
 * Creates a ready SQL guard: loads the PostgreSQL parser (WASM) and reads the guarded tables from
 * pg_catalog through `pool` (or takes `tables`). Async so that `check` can be synchronous.
 *
 * @example
 * const guard = await createQueryGuard({ pool, exemptTables: ['schema_migrations'] });
 * await withTenantTransaction(pool, tenantId, (tx) => tx.query('SELECT * FROM legacy_notes WHERE tenant_id = $1', [tx.tenantId]), { guard });
 */
export async function createQueryGuard(options: QueryGuardOptions): Promise<TenantQueryGuard> {
  if (!options || (!options.pool && !options.tables)) throw new TypeError('createQueryGuard needs `pool` (to read the catalog) or `tables`');
  await loadModule();
  const tenancy = options.tenancy ?? DEFAULT_TENANCY;
  const catalog = options.pool
    ? await readGuardCatalog(options.pool, options)
    : staticGuardCatalog(options.tables ?? [], { tenancy, searchPath: options.searchPath });
  return new TenantQueryGuard(options, catalog);
}

export { withAdminBypass, type AdminBypassOptions } from './bypass.js';
export { TenantGuardError, type GuardViolation } from './errors.js';
export { GUARD_CHANNELS, type GuardViolationEvent, type GuardBypassEvent } from './events.js';
export { readGuardCatalog, staticGuardCatalog, type GuardCatalog, type GuardedTable, type BlindView, type StaticTableInput, type CatalogQueryable } from './catalog.js';
export type { Verdict, Requirement, Candidate } from './verdict.js';
