import { DEFAULT_TENANCY, type TenancyConfig } from './config.js';
import { TenantCache, TenantCacheService, type TenantCacheOptions } from './cache.js';
import {
  InvalidTenantIdError,
  TenantConflictError,
  TenantError,
  TenantNotFoundError,
  TenantRequiredError,
  TenantSuspendedError,
} from './errors.js';
import { resolutionChannel, type ResolutionEvent } from './events.js';
import { TenantChangeListener, type TenantChangeListenerOptions } from './invalidation.js';
import { buildStrategies, type Strategy, type StrategyDefaults, type StrategySpec, type TenantCandidate, type TenantRequest } from './resolution.js';
import type { Tenant, TenantService } from './tenants.js';

export interface MultitenantOptions extends StrategyDefaults {
  /** Where tenants are looked up, e.g. `new PgTenantService(appPool, { tenancy })`. */
  tenantService: TenantService;
  /** Default `defineTenancy()`: uuid ids. */
  tenancy?: TenancyConfig;
  /** Cache options, or false for none. Default: a TenantCache with its defaults. */
  cache?: TenantCacheOptions | false;
  /** In order. Default `['header']`. When two strategies name different tenants the request is refused. */
  strategies?: readonly StrategySpec[];
}

export interface Resolution {
  readonly tenant: Tenant;
  readonly candidates: readonly TenantCandidate[];
}

/**
 * The composition root (the seed's MultitenantCore): the tenant service behind its cache, the
 * resolution strategies, and cross-instance invalidation. Framework-neutral: the Koa middleware
 * (`linkbay-multitenant/koa`) is a thin adapter over `resolve`.
 *
 * @example
 * const core = createMultitenant({ tenantService: new PgTenantService(appPool), strategies: ['header', 'subdomain'], baseDomain: 'example.com' });
 * await core.listen(process.env.APP_DATABASE_URL!); // cache invalidation across instances
 */
export class MultitenantCore {
  readonly tenancy: TenancyConfig;
  /** The service requests use: cached unless `cache: false`. */
  readonly tenants: TenantService;
  /** The cache, when there is one. */
  readonly cache: TenantCacheService | undefined;
  readonly strategies: readonly Strategy[];
  private listener: TenantChangeListener | undefined;

  constructor(options: MultitenantOptions) {
    if (!options?.tenantService) throw new TypeError('`tenantService` is required');
    this.tenancy = options.tenancy ?? DEFAULT_TENANCY;
    this.cache = options.cache === false ? undefined : new TenantCacheService(new TenantCache(options.cache ?? {}), options.tenantService);
    this.tenants = this.cache ?? options.tenantService;
    this.strategies = buildStrategies(options.strategies ?? ['header'], this.tenancy.tenantIdType, options);
  }

  /**
   * Resolves the request's tenant. Throws a TenantError: TenantRequiredError (no strategy named a
   * tenant), InvalidTenantIdError (malformed), TenantConflictError (strategies disagree),
   * TenantNotFoundError, TenantSuspendedError (suspended, deleted or provisioning). With `optional`, a request
   * naming no tenant resolves to undefined; one naming a bad tenant still throws.
   */
  async resolve(request: TenantRequest, options: { optional?: boolean } = {}): Promise<Resolution | undefined> {
    return this.resolveNow(request, options);
  }

  /**
   * `resolve`, but synchronous (a value, or a synchronous throw) when every strategy answers
   * synchronously and the cache knows every tenant named: a warm request then costs no promise and
   * no microtask. Otherwise a promise, as `resolve`. What the Koa middleware calls.
   */
  resolveNow(request: TenantRequest, options: { optional?: boolean } = {}): MaybePromise<Resolution | undefined> {
    // The warm path below creates no closure and no promise; callbacks exist only on the slow path.
    const report: Report = { started: performance.now(), outcome: 'error', strategy: undefined, tenantId: undefined };
    let result: MaybePromise<Resolution | undefined>;
    try {
      const candidates = this.candidates(request);
      result = isPromise(candidates) ? candidates.then((c) => this.decide(c, options, report)) : this.decide(candidates, options, report);
    } catch (error) {
      this.publish(report, error);
      throw error;
    }
    if (!isPromise(result)) {
      this.publish(report);
      return result;
    }
    return Promise.resolve(result).then(
      (resolution) => {
        this.publish(report);
        return resolution;
      },
      (error: unknown) => {
        this.publish(report, error);
        throw error;
      },
    );
  }

  /** What each strategy finds, in order; synchronous unless a strategy answers with a promise. */
  private candidates(request: TenantRequest, from = 0, found: TenantCandidate[] = []): MaybePromise<TenantCandidate[]> {
    for (let i = from; i < this.strategies.length; i += 1) {
      const candidate = this.strategies[i]!.find(request);
      if (isPromise(candidate)) {
        return candidate.then((c) => {
          if (c) found.push(c);
          return this.candidates(request, i + 1, found);
        });
      }
      if (candidate) found.push(candidate);
    }
    return found;
  }

  /** Looks every candidate up, in order: each must exist and all must be one tenant, an active one. */
  private decide(
    candidates: TenantCandidate[],
    options: { optional?: boolean },
    report: Report,
    from = 0,
    tenant?: Tenant,
  ): MaybePromise<Resolution | undefined> {
    report.strategy = candidates[0]?.strategy;
    if (candidates.length === 0) {
      report.outcome = 'missing';
      if (options.optional) return undefined;
      throw new TenantRequiredError('this request names no tenant');
    }
    for (let i = from; i < candidates.length; i += 1) {
      const found = this.lookup(candidates[i]!);
      if (isPromise(found)) {
        return found.then((f) => this.decide(candidates, options, report, i + 1, this.accept(candidates, i, f, tenant, report)));
      }
      tenant = this.accept(candidates, i, found, tenant, report);
    }
    report.tenantId = tenant!.id;
    if (tenant!.status !== 'active') {
      report.outcome = 'inactive';
      throw new TenantSuspendedError();
    }
    report.outcome = 'resolved';
    return { tenant: tenant!, candidates };
  }

  /** The tenant candidate `i` names, when it exists and agrees with the earlier candidates. */
  private accept(candidates: TenantCandidate[], i: number, found: Tenant | undefined, earlier: Tenant | undefined, report: Report): Tenant {
    if (!found) {
      report.outcome = 'unknown';
      throw new TenantNotFoundError();
    }
    if (earlier && earlier.id !== found.id) {
      report.outcome = 'conflict';
      throw new TenantConflictError(`the ${candidates[0]!.strategy} and ${candidates[i]!.strategy} strategies name different tenants`);
    }
    return found;
  }

  private publish(report: Report, error?: unknown): void {
    if (error instanceof InvalidTenantIdError) report.outcome = 'invalid';
    // A credentials strategy (linkbay-multitenant/auth) that could not verify the request's token or key.
    else if (error instanceof TenantError && error.status === 401) report.outcome = 'unauthenticated';
    if (resolutionChannel.hasSubscribers) {
      const { outcome, strategy, tenantId, started } = report;
      resolutionChannel.publish({ outcome, strategy, tenantId, durationMs: performance.now() - started } satisfies ResolutionEvent);
    }
  }

  /** The path with the tenant prefix removed when a path strategy matched it. */
  stripPath(path: string): string {
    for (const s of this.strategies) if (s.strip) path = s.strip(path);
    return path;
  }

  /**
   * Starts cross-instance cache invalidation (LISTEN on the registry's channel). Resolves once
   * listening. A no-op without a cache.
   */
  async listen(connectionString: string, options: Pick<TenantChangeListenerOptions, 'onEvent' | 'reconnectDelayMs' | 'maxReconnectDelayMs'> = {}): Promise<TenantChangeListener | undefined> {
    if (!this.cache) return undefined;
    await this.listener?.stop();
    this.listener = await TenantChangeListener.start({ connectionString, target: this.cache, ...options });
    return this.listener;
  }

  async close(): Promise<void> {
    await this.listener?.stop();
    this.listener = undefined;
  }

  private lookup(candidate: TenantCandidate): MaybePromise<Tenant | undefined> {
    if (this.cache) return this.cache.find(candidate.by, candidate.value);
    switch (candidate.by) {
      case 'id':
        return this.tenants.getTenantById(candidate.value);
      case 'slug':
        return this.tenants.getTenantBySubdomain(candidate.value);
      case 'domain':
        return this.tenants.getTenantByDomain(candidate.value);
    }
  }
}

/** A value, or a promise of it when it could not be had synchronously. */
export type MaybePromise<T> = T | Promise<T>;

interface Report {
  readonly started: number;
  outcome: ResolutionEvent['outcome'];
  strategy: string | undefined;
  tenantId: string | undefined;
}

function isPromise<T>(value: MaybePromise<T>): value is Promise<T> {
  return typeof (value as Promise<T> | undefined)?.then === 'function';
}

export function createMultitenant(options: MultitenantOptions): MultitenantCore {
  return new MultitenantCore(options);
}
