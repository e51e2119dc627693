import type { KeyObject } from 'node:crypto';
import type { JWTVerifyOptions } from 'jose';
import type { StrategySpec } from '../resolution.js';
import { TenantUnauthenticatedError } from './errors.js';

/**
 * What verifies a token's signature: a secret, a public key, or a key resolver such as jose's
 * `createRemoteJWKSet(url)`. Typed without jose's types, so this subpath's declarations need jose
 * only when JWTs are used.
 */
export type JwtKey = Uint8Array | KeyObject | CryptoKey | ((protectedHeader: any, token: any) => Promise<unknown>);

export interface JwtTenantOptions {
  /** The verification key (or key set). */
  readonly key: JwtKey;
  /** Accepted `iss` value(s): required, so a token of another issuer sharing the key is refused. */
  readonly issuer: string | readonly string[];
  /** Accepted `aud` value(s): required, so a token minted for another service is refused. */
  readonly audience: string | readonly string[];
  /** Accepted algorithms. Default: jose's, which follow the key (never `none`). */
  readonly algorithms?: readonly string[];
  /** The claim naming the tenant. Default `tenant_id`. */
  readonly claim?: string;
  /** What the claim names: the tenant id (default) or its slug. */
  readonly by?: 'id' | 'slug';
  /** Allowed clock skew for exp/nbf/iat, in seconds. Default 0. */
  readonly clockToleranceSeconds?: number;
  /** Refuse tokens older than this (`iat`), in seconds. Default: no limit beyond `exp`. */
  readonly maxTokenAgeSeconds?: number;
  /** Strategy name in resolution events. Default `jwt`. */
  readonly name?: string;
}

// RFC 6750 b64token: a JWS compact serialisation is three base64url parts.
const BEARER = /^Bearer +(\S+)$/i;
const MAX_TOKEN_LENGTH = 8192;
/** RFC 6750 section 3: the challenge of a request whose token was refused. */
const INVALID_TOKEN = 'Bearer error="invalid_token"';

let jose: Promise<typeof import('jose')> | undefined;

/**
 * A resolution strategy that reads the tenant from a verified JWT (`Authorization: Bearer <jwt>`):
 * signature, `exp` (required), `iss` and `aud` are checked with jose. A request without a Bearer
 * token names no tenant here (the next strategy may); one whose token cannot be verified is
 * TenantUnauthenticatedError (401) and resolution stops: it never falls through to another strategy.
 *
 * @example
 * const core = createMultitenant({
 *   tenantService,
 *   strategies: [jwtTenant({ key: createRemoteJWKSet(new URL('https://auth.example.com/.well-known/jwks.json')), issuer: 'https://auth.example.com/', audience: 'orders-api' })],
 * });
 */
export function jwtTenant(options: JwtTenantOptions): StrategySpec {
  if (!options?.key) throw new TypeError('`key` is required (a secret, a public key or a JWKS)');
  const issuer = list(options.issuer, 'issuer');
  const audience = list(options.audience, 'audience');
  const claim = options.claim ?? 'tenant_id';
  if (typeof claim !== 'string' || claim.length === 0) throw new TypeError('`claim` must be a claim name');
  const by = options.by ?? 'id';
  if (by !== 'id' && by !== 'slug') throw new TypeError('`by` must be "id" or "slug"');
  const tolerance = options.clockToleranceSeconds ?? 0;
  if (!Number.isFinite(tolerance) || tolerance < 0) throw new TypeError('`clockToleranceSeconds` must be a non-negative number');
  if (options.maxTokenAgeSeconds !== undefined && !(Number.isFinite(options.maxTokenAgeSeconds) && options.maxTokenAgeSeconds > 0)) {
    throw new TypeError('`maxTokenAgeSeconds` must be a positive number');
  }
  const verifyOptions: JWTVerifyOptions = {
    issuer,
    audience,
    clockTolerance: tolerance,
    requiredClaims: ['exp', claim],
    ...(options.algorithms ? { algorithms: [...options.algorithms] } : {}),
    ...(options.maxTokenAgeSeconds !== undefined ? { maxTokenAge: options.maxTokenAgeSeconds } : {}),
  };
  const name = options.name ?? 'jwt';

  return {
    name,
    custom: async (request) => {
      const header = request.header('authorization');
      if (header === undefined || !/^Bearer(\s|$)/i.test(header)) return undefined; // no token: not this strategy's request
      const token = BEARER.exec(header)?.[1];
      if (!token || token.length > MAX_TOKEN_LENGTH) throw new TenantUnauthenticatedError('send Authorization: Bearer <token>', INVALID_TOKEN);
      jose ??= import('jose');
      const { jwtVerify } = await jose;
      let payload: Record<string, unknown>;
      try {
        // Overloads differ for a key and a key set; both are accepted here.
        ({ payload } = await jwtVerify(token, options.key as Uint8Array, verifyOptions));
      } catch (error) {
        throw new TenantUnauthenticatedError('the bearer token is not valid', INVALID_TOKEN, { cause: error });
      }
      const value = payload[claim];
      if (!(typeof value === 'string' && value.length > 0) && !(typeof value === 'number' && Number.isSafeInteger(value))) {
        throw new TenantUnauthenticatedError('the bearer token names no tenant', INVALID_TOKEN);
      }
      return { by, value: String(value) };
    },
  };
}

function list(value: string | readonly string[] | undefined, option: string): string[] {
  const values = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(values) || values.length === 0 || values.some((v) => typeof v !== 'string' || v.length === 0)) {
    throw new TypeError(`\`${option}\` is required: a non-empty string or array of strings`);
  }
  return [...values];
}
