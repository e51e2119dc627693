import { InvalidTenantIdError, TenancyConfigError } from './errors.js';
import { canonicalTenantId, SLUG, type TenantIdType } from './tenant-id.js';

/** The parts of an HTTP request that strategies read; framework-neutral. */
export interface TenantRequest {
  /** Header lookup, case-insensitive. */
  header(name: string): string | undefined;
  /** The Host (or, when the proxy is trusted, X-Forwarded-Host), as received. */
  readonly host: string;
  readonly path: string;
}

/** What a strategy found: a tenant named by id, by slug (subdomain) or by custom domain. */
export type TenantCandidate = { readonly by: 'id' | 'slug' | 'domain'; readonly value: string; readonly strategy: string };

/** A custom strategy: return an id string, a candidate, or undefined when the request names no tenant. */
export type CustomStrategy = (request: TenantRequest) =>
  | string
  | Omit<TenantCandidate, 'strategy'>
  | undefined
  | Promise<string | Omit<TenantCandidate, 'strategy'> | undefined>;

export type StrategySpec =
  | 'header'
  | 'subdomain'
  | 'domain'
  | 'path'
  | { header: string }
  | { subdomain: { baseDomain: string } }
  | { path: { prefix: string; by?: 'slug' | 'id' } }
  | { custom: CustomStrategy; name?: string };

export interface StrategyDefaults {
  /** Default `X-Tenant-ID`. */
  header?: string;
  /** Base domain for `subdomain`: `<slug>.<baseDomain>`. Default `localhost`. */
  baseDomain?: string;
  /** Prefix for `path`: `/t/<tenant>/...`. Default `/t`. */
  pathPrefix?: string;
  /** What the path segment names. Default `slug`. */
  pathBy?: 'slug' | 'id';
}

export interface Strategy {
  readonly name: string;
  find(request: TenantRequest): TenantCandidate | undefined | Promise<TenantCandidate | undefined>;
  /** For `path`: the path with the tenant prefix removed, so routers match the rest. */
  strip?(path: string): string;
}

/** Longest header value considered; longer is refused without being read. */
const MAX_HEADER_LENGTH = 256;

/** Builds strategies from their specs, validated once (bad specs are TenancyConfigError). */
export function buildStrategies(specs: readonly StrategySpec[], tenantIdType: TenantIdType, defaults: StrategyDefaults = {}): Strategy[] {
  if (specs.length === 0) throw new TenancyConfigError('`strategies` must name at least one strategy');
  return specs.map((spec) => {
    if (spec === 'header' || (typeof spec === 'object' && 'header' in spec)) {
      return headerStrategy(typeof spec === 'object' ? spec.header : defaults.header ?? 'X-Tenant-ID', tenantIdType);
    }
    if (spec === 'subdomain' || (typeof spec === 'object' && 'subdomain' in spec)) {
      return subdomainStrategy(typeof spec === 'object' ? spec.subdomain.baseDomain : defaults.baseDomain ?? 'localhost');
    }
    if (spec === 'domain') return domainStrategy(defaults.baseDomain ?? 'localhost');
    if (spec === 'path' || (typeof spec === 'object' && 'path' in spec)) {
      const options = typeof spec === 'object' ? spec.path : { prefix: defaults.pathPrefix ?? '/t', by: defaults.pathBy };
      return pathStrategy(options.prefix, options.by ?? 'slug', tenantIdType);
    }
    if (typeof spec === 'object' && 'custom' in spec && typeof spec.custom === 'function') {
      return customStrategy(spec.custom, spec.name ?? 'custom', tenantIdType);
    }
    throw new TenancyConfigError(`unknown strategy ${JSON.stringify(spec)}`);
  });
}

function headerStrategy(header: string, type: TenantIdType): Strategy {
  if (!/^[A-Za-z0-9-]+$/.test(header)) throw new TenancyConfigError('`header` must be a header name');
  return {
    name: 'header',
    find(request) {
      const raw = request.header(header);
      if (raw === undefined) return undefined;
      if (raw.length > MAX_HEADER_LENGTH) throw new InvalidTenantIdError(`the ${header} header is too long`);
      if (raw.trim() === '') throw new InvalidTenantIdError(`the ${header} header is empty`);
      return { by: 'id', value: canonicalTenantId(raw, type), strategy: 'header' };
    },
  };
}

function subdomainStrategy(baseDomain: string): Strategy {
  const base = normaliseHost(baseDomain);
  if (!base) throw new TenancyConfigError('`baseDomain` must be a host name');
  const suffix = `.${base}`;
  return {
    name: 'subdomain',
    find(request) {
      const host = normaliseHost(request.host);
      if (!host || !host.endsWith(suffix)) return undefined;
      const label = host.slice(0, -suffix.length);
      // One label only: a.b.example.com names no tenant (and is not silently read as "b").
      if (!SLUG.test(label)) throw new InvalidTenantIdError('the subdomain is not a tenant name');
      return { by: 'slug', value: label, strategy: 'subdomain' };
    },
  };
}

function domainStrategy(baseDomain: string): Strategy {
  const base = normaliseHost(baseDomain);
  return {
    name: 'domain',
    find(request) {
      const host = normaliseHost(request.host);
      // A request addressed by IP or to localhost names no tenant (no tenant may own such a domain).
      if (!host || host === base || host.endsWith(`.${base}`) || !isTenantDomain(host)) return undefined;
      return { by: 'domain', value: host, strategy: 'domain' };
    },
  };
}

function pathStrategy(prefix: string, by: 'slug' | 'id', type: TenantIdType): Strategy {
  if (!/^\/[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/.test(prefix)) throw new TenancyConfigError('`pathPrefix` must look like "/t"');
  const start = `${prefix}/`;
  const segment = (path: string) => {
    if (!path.startsWith(start)) return undefined;
    const end = path.indexOf('/', start.length);
    return { value: path.slice(start.length, end === -1 ? undefined : end), rest: end === -1 ? '/' : path.slice(end) };
  };
  return {
    name: 'path',
    find(request) {
      const found = segment(request.path);
      if (!found) return undefined;
      let value: string;
      try {
        value = decodeURIComponent(found.value);
      } catch {
        throw new InvalidTenantIdError('the tenant in the path is not valid');
      }
      if (by === 'id') return { by, value: canonicalTenantId(value, type), strategy: 'path' };
      const slug = value.toLowerCase();
      if (!SLUG.test(slug)) throw new InvalidTenantIdError('the tenant in the path is not a tenant name');
      return { by, value: slug, strategy: 'path' };
    },
    strip(path) {
      return segment(path)?.rest ?? path;
    },
  };
}

function customStrategy(fn: CustomStrategy, name: string, type: TenantIdType): Strategy {
  return {
    name,
    async find(request) {
      const found = await fn(request);
      if (found === undefined) return undefined;
      if (typeof found === 'string') return { by: 'id', value: canonicalTenantId(found, type), strategy: name };
      if (found.by === 'id') return { by: 'id', value: canonicalTenantId(found.value, type), strategy: name };
      const value = found.by === 'domain' ? normaliseHost(found.value) : found.value.toLowerCase();
      if (!value || (found.by === 'slug' && !SLUG.test(value))) throw new InvalidTenantIdError(`the ${name} strategy returned an invalid tenant`);
      return { by: found.by, value, strategy: name };
    },
  };
}

/**
 * Lower case, no port, no trailing dot; undefined for anything that is not a plausible host name
 * (IPv6 literals, spaces, non-ASCII that was not punycoded).
 */
export function normaliseHost(raw: string | undefined): string | undefined {
  if (!raw || raw.length > 255) return undefined;
  let host = raw.trim().toLowerCase();
  if (host.startsWith('[')) return undefined;
  const colon = host.indexOf(':');
  if (colon !== -1) {
    if (!/^:\d{1,5}$/.test(host.slice(colon))) return undefined;
    host = host.slice(0, colon);
  }
  if (host.endsWith('.')) host = host.slice(0, -1);
  if (!/^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/.test(host) || host.includes('..')) return undefined;
  return host;
}

/**
 * Whether a normalised host may be a tenant's custom domain: a DNS name of at least two labels
 * whose last label is not numeric (so no IPv4 literal in any spelling `normaliseHost` lets through,
 * such as `127.0.0.1` or `0x7f.1`), and not `localhost` or under it. Otherwise every request addressed
 * by IP, or to localhost, would go to the tenant that claimed it.
 */
export function isTenantDomain(host: string): boolean {
  const labels = host.split('.');
  if (labels.length < 2) return false;
  const last = labels[labels.length - 1]!;
  if (/^(0x[0-9a-f]*|[0-9]+)$/.test(last)) return false;
  return host !== 'localhost' && !host.endsWith('.localhost') && host !== 'localhost.localdomain';
}
