import { DEFAULT_TENANCY, type TenancyConfig } from './config.js';
import { TenantCache, TenantCacheService, type TenantCacheOptions } from './cache.js';
import {
  InvalidTenantIdError,
  TenantConflictError,
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
   * TenantNotFoundError, TenantSuspendedError (suspended or deleted). With `optional`, a request
   * naming no tenant resolves to undefined; one naming a bad tenant still throws.
   */
  async resolve(request: TenantRequest, options: { optional?: boolean } = {}): Promise<Resolution | undefined> {
    const started = performance.now();
    let outcome: ResolutionEvent['outcome'] = 'error';
    let strategy: string | undefined;
    let tenantId: string | undefined;
    try {
      const candidates: TenantCandidate[] = [];
      for (const s of this.strategies) {
        const found = await s.find(request);
        if (found) candidates.push(found);
      }
      strategy = candidates[0]?.strategy;
      if (candidates.length === 0) {
        outcome = 'missing';
        if (options.optional) return undefined;
        throw new TenantRequiredError('this request names no tenant');
      }
      let tenant: Tenant | undefined;
      for (const candidate of candidates) {
        const found = await this.lookup(candidate);
        if (!found) {
          outcome = 'unknown';
          throw new TenantNotFoundError();
        }
        if (tenant && tenant.id !== found.id) {
          outcome = 'conflict';
          throw new TenantConflictError(`the ${candidates[0]!.strategy} and ${candidate.strategy} strategies name different tenants`);
        }
        tenant = found;
      }
      tenantId = tenant!.id;
      if (tenant!.status !== 'active') {
        outcome = 'inactive';
        throw new TenantSuspendedError();
      }
      outcome = 'resolved';
      return { tenant: tenant!, candidates };
    } catch (error) {
      if (error instanceof InvalidTenantIdError) outcome = 'invalid';
      throw error;
    } finally {
      if (resolutionChannel.hasSubscribers) {
        resolutionChannel.publish({ outcome, strategy, tenantId, durationMs: performance.now() - started } satisfies ResolutionEvent);
      }
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

  private lookup(candidate: TenantCandidate): Promise<Tenant | undefined> {
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

export function createMultitenant(options: MultitenantOptions): MultitenantCore {
  return new MultitenantCore(options);
}
