import QuickLRU from 'quick-lru';
import type { Tenant, TenantService } from './tenants.js';

export interface TenantCacheOptions {
  /** Most tenants kept (quick-lru keeps up to twice this many briefly). Default 1000. */
  maxSize?: number;
  /** How long a found tenant is trusted without an invalidation. Default 300_000 (5 min). */
  ttlMs?: number;
  /** Most "no such tenant" answers kept. Default 1000. */
  maxNegative?: number;
  /** How long a "no such tenant" answer is kept. Default 5_000. Short: tenants get created. */
  negativeTtlMs?: number;
  /** The clock the ttls are measured with, in milliseconds. Default `Date.now` (tests pass one they move). */
  now?: () => number;
}

export interface TenantCacheStats {
  hits: number;
  misses: number;
  negativeHits: number;
  evictions: number;
  size: number;
  negativeSize: number;
}

/** Lookup keys: a tenant can be found by id, by domain and by slug (subdomain). */
export type TenantKey = `id:${string}` | `domain:${string}` | `slug:${string}`;

const DEFAULTS: Required<Omit<TenantCacheOptions, 'now'>> = { maxSize: 1000, ttlMs: 300_000, maxNegative: 1000, negativeTtlMs: 5_000 };

/**
 * Tenants by lookup key, on quick-lru, with TTL and bounded negative entries (the seed's
 * TenantCache). Invalidation by tenant id drops every key that led to that tenant.
 */
export class TenantCache {
  // Entries carry their expiry, measured with `now` (quick-lru's maxAge reads Date.now itself).
  private readonly found: QuickLRU<TenantKey, { tenant: Tenant; expiresAt: number }>;
  private readonly missing: QuickLRU<TenantKey, number>;
  private readonly counters = { hits: 0, misses: 0, negativeHits: 0, evictions: 0 };
  private readonly now: () => number;
  private readonly ttlMs: number;
  private readonly negativeTtlMs: number;

  constructor(options: TenantCacheOptions = {}) {
    const o = { ...DEFAULTS, ...options };
    for (const key of Object.keys(DEFAULTS) as Array<keyof typeof DEFAULTS>) {
      if (!Number.isFinite(o[key]) || o[key] <= 0) throw new TypeError(`\`${key}\` must be a number greater than 0`);
    }
    if (options.now !== undefined && typeof options.now !== 'function') throw new TypeError('`now` must be a function returning milliseconds');
    this.now = options.now ?? Date.now;
    this.ttlMs = o.ttlMs;
    this.negativeTtlMs = o.negativeTtlMs;
    const onEviction = () => {
      this.counters.evictions += 1;
    };
    this.found = new QuickLRU({ maxSize: o.maxSize, onEviction });
    this.missing = new QuickLRU({ maxSize: o.maxNegative, onEviction });
  }

  /** The tenant, `null` for a cached "not found", `undefined` when the cache does not know. */
  get(key: TenantKey): Tenant | null | undefined {
    const entry = this.found.get(key);
    if (entry !== undefined) {
      if (entry.expiresAt > this.now()) {
        this.counters.hits += 1;
        return entry.tenant;
      }
      this.found.delete(key);
      this.counters.evictions += 1;
    }
    const until = this.missing.get(key);
    if (until !== undefined) {
      if (until > this.now()) {
        this.counters.negativeHits += 1;
        return null;
      }
      this.missing.delete(key);
      this.counters.evictions += 1;
    }
    this.counters.misses += 1;
    return undefined;
  }

  set(key: TenantKey, tenant: Tenant | null): void {
    if (tenant === null) {
      this.found.delete(key);
      this.missing.set(key, this.now() + this.negativeTtlMs);
    } else {
      this.missing.delete(key);
      this.found.set(key, { tenant, expiresAt: this.now() + this.ttlMs });
    }
  }

  /** Drops every entry of the tenant with this id (by id, slug and domain), and the given keys. */
  invalidate(tenantId: string, keys: Iterable<TenantKey> = []): void {
    this.delete(`id:${tenantId}`);
    for (const [key, entry] of this.found) if (entry.tenant.id === tenantId) this.found.delete(key);
    for (const key of keys) this.delete(key);
  }

  delete(key: TenantKey): void {
    this.found.delete(key);
    this.missing.delete(key);
  }

  clear(): void {
    this.found.clear();
    this.missing.clear();
  }

  stats(): TenantCacheStats {
    return { ...this.counters, size: this.found.size, negativeSize: this.missing.size };
  }
}

/**
 * A TenantService in front of another, through a TenantCache, with concurrent misses for one key
 * coalesced into one lookup (the seed's TenantCacheService).
 *
 * @example
 * const tenants = new TenantCacheService(new TenantCache({ ttlMs: 60_000 }), new PgTenantService(appPool));
 */
export class TenantCacheService implements TenantService {
  private readonly inflight = new Map<TenantKey, Promise<Tenant | undefined>>();
  // Bumped by every invalidation: a lookup that started before it must not write its (maybe stale)
  // answer into the cache.
  private generation = 0;

  constructor(
    readonly cache: TenantCache,
    private readonly service: TenantService,
  ) {}

  getTenantById(id: string): Promise<Tenant | undefined> {
    return Promise.resolve(this.find('id', id));
  }

  getTenantByDomain(domain: string): Promise<Tenant | undefined> {
    return Promise.resolve(this.find('domain', domain));
  }

  getTenantBySubdomain(subdomain: string): Promise<Tenant | undefined> {
    return Promise.resolve(this.find('slug', subdomain));
  }

  /**
   * The tenant, synchronously when the cache knows the answer (no promise, no microtask: the warm
   * path of every request), else a promise of the lookup.
   */
  find(by: 'id' | 'domain' | 'slug', value: string): Tenant | undefined | Promise<Tenant | undefined> {
    const key: TenantKey = `${by}:${value}`;
    const cached = this.cache.get(key);
    if (cached !== undefined) return cached ?? undefined;
    switch (by) {
      case 'id':
        return this.load(key, () => this.service.getTenantById(value));
      case 'domain':
        return this.load(key, () => this.service.getTenantByDomain(value));
      case 'slug':
        return this.load(key, () => this.service.getTenantBySubdomain(value));
    }
  }

  async getTenantDatabaseUrl(id: string): Promise<string | undefined> {
    return (await this.getTenantById(id))?.databaseUrl ?? undefined;
  }

  /** Drops the tenant from the cache; lookups in flight will not re-cache their answer. */
  invalidate(tenantId: string, keys: Iterable<TenantKey> = []): void {
    this.generation += 1;
    this.inflight.clear();
    this.cache.invalidate(tenantId, keys);
  }

  /** Drops everything (after a lost invalidation connection: notifications may have been missed). */
  clear(): void {
    this.generation += 1;
    this.inflight.clear();
    this.cache.clear();
  }

  private load(key: TenantKey, fetch: () => Promise<Tenant | undefined>): Promise<Tenant | undefined> {
    const pending = this.inflight.get(key);
    if (pending) return pending;
    const generation = this.generation;
    const promise = fetch().then(
      (tenant) => {
        if (this.inflight.get(key) === promise) this.inflight.delete(key);
        if (generation === this.generation) {
          this.cache.set(key, tenant ?? null);
          // Found by slug or domain: also known by id, and the other way round.
          if (tenant) this.cache.set(`id:${tenant.id}`, tenant);
        }
        return tenant;
      },
      (error) => {
        if (this.inflight.get(key) === promise) this.inflight.delete(key);
        throw error;
      },
    );
    this.inflight.set(key, promise);
    return promise;
  }
}
