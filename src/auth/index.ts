/**
 * linkbay-multitenant/auth: the tenant from credentials. `jwtTenant` (a verified JWT claim; jose is
 * an optional peer dependency, loaded on the first token) and `apiKeyTenant` (hashed API keys looked
 * up by a narrow SECURITY DEFINER function) are resolution strategies for `createMultitenant`.
 */
export { jwtTenant, type JwtTenantOptions, type JwtKey } from './jwt.js';
export { apiKeyTenant, apiKeysSql, apiKeyDigest, createApiKey, revokeApiKey, API_KEY_PREFIX, type ApiKeyTenantOptions } from './api-keys.js';
export { TenantUnauthenticatedError } from './errors.js';
