import { z } from 'zod';
import { InvalidTenantIdError, TenantInputError, type FieldIssue } from './errors.js';
import { jsonDepth } from './json-depth.js';
import { isTenantDomain, normaliseHost } from './resolution.js';
import { canonicalTenantId, MAX_TEXT_TENANT_ID_LENGTH, SLUG, type TenantIdType } from './tenant-id.js';

/**
 * The tenants registry's input rules as zod schemas: TenantAdminService validates with them, and
 * the admin API's OpenAPI document (`GET /admin/openapi.json`) is generated from them, so what is
 * documented is what is checked. Each rule's message names its field in backticks, as the
 * hand-written checks before did; an invalid tenant id is an InvalidTenantIdError (400) as
 * everywhere else, every other refusal a TenantInputError (422) carrying every issue.
 *
 * zod is a dependency of the core (pure JavaScript, no dependencies of its own, no WebAssembly):
 * the rules belong to TenantAdminService, which programs call without any HTTP layer. It is loaded
 * on the first validation, not by importing the core (~80 ms of a cold start): the schemas are
 * exported from the `koa` subpath, which needs them for the OpenAPI document anyway.
 */

import { MAX_METADATA_BYTES, MAX_METADATA_DEPTH } from './tenant-limits.js';

export { MAX_METADATA_BYTES, MAX_METADATA_DEPTH };

const PLAN = /^[a-z0-9][a-z0-9_-]{0,63}$/;
// What normaliseHost leaves unchanged: lower case, no port, no trailing dot, no empty label. The
// regexp documents the rule in the OpenAPI document; normaliseHost itself is checked too.
const HOST = /^(?!.*\.\.)[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;

const M = {
  object: 'the tenant must be an object',
  slug: '`slug` must be 1 to 63 lower-case letters, digits and inner hyphens',
  name: '`name` must be 1 to 200 characters, without NUL or lone surrogates',
  domain: '`domain` must be a lower-case host name without port',
  domainDns: '`domain` must be a DNS name with a dot, not an IP address or localhost',
  plan: '`plan` must be 1 to 64 lower-case letters, digits, _ or -',
  metadata: '`metadata` must be an object',
  metadataDepth: `\`metadata\` must not nest deeper than ${MAX_METADATA_DEPTH} levels`,
  metadataJson: '`metadata` must be JSON (no cycles, no BigInt)',
  metadataNumber: '`metadata` numbers must be finite (a JSON number beyond ±1.8e308 is not)',
  metadataSize: '`metadata` must be at most 16 KB of JSON',
  metadataNul: '`metadata` must not contain NUL characters',
  databaseUrl: '`databaseUrl` must be a postgres:// URL',
  idRequired: '`id` is required for text tenant ids',
} as const;

const slug = z.string({ error: M.slug }).regex(SLUG, { error: M.slug }).meta({ description: 'A DNS label: 1 to 63 lower-case letters, digits and inner hyphens.', examples: ['acme'] });

const name = z
  .string({ error: M.name })
  .max(200, { error: M.name })
  // A lone surrogate (`\ud800` in JSON) would be stored as U+FFFD: refused, not changed.
  .refine((value) => value.trim().length > 0 && !value.includes('\u0000') && !/\p{Cs}/u.test(value), { error: M.name })
  .meta({ description: '1 to 200 characters, not only spaces, without NUL or lone surrogates.', examples: ['Acme Inc'] });

const domain = z
  .string({ error: M.domain })
  .regex(HOST, { error: M.domain })
  .refine((value) => normaliseHost(value) === value, { error: M.domain })
  .refine(isTenantDomain, { error: M.domainDns })
  .nullable()
  .meta({ description: 'A custom domain: a lower-case DNS name with a dot, without port; not an IP address or localhost. null for none.', examples: ['acme.example.com'] });

const plan = z.string({ error: M.plan }).regex(PLAN, { error: M.plan }).meta({ description: '1 to 64 lower-case letters, digits, _ or -. Default `default`.', examples: ['pro'] });

const metadata = z
  .record(z.string(), z.unknown(), { error: M.metadata })
  .superRefine((value, ctx) => {
    // In this order: the depth is measured without recursion before JSON.stringify, which would
    // overflow the stack on the values the limit exists to refuse.
    const refuse = (message: string) => ctx.addIssue({ code: 'custom', message });
    if (jsonDepth(value) > MAX_METADATA_DEPTH) return refuse(M.metadataDepth);
    let json: string;
    let finite = true;
    try {
      // JSON.stringify writes NaN and Infinity as null: a number 1e400 in a body (parsed to
      // Infinity) would be stored as null, silently.
      json = JSON.stringify(value, (_key, v: unknown) => {
        if (typeof v === 'number' && !Number.isFinite(v)) finite = false;
        return v;
      });
    } catch {
      return refuse(M.metadataJson);
    }
    if (!finite) return refuse(M.metadataNumber);
    if (Buffer.byteLength(json) > MAX_METADATA_BYTES) return refuse(M.metadataSize);
    if (json.includes('\\u0000')) return refuse(M.metadataNul);
  })
  .meta({ description: `Any JSON object: at most ${MAX_METADATA_BYTES / 1024} KB as JSON, nested at most ${MAX_METADATA_DEPTH} levels, without NUL characters.`, examples: [{ seats: 10 }] });

const databaseUrl = z
  .string({ error: M.databaseUrl })
  .refine(isPostgresUrl, { error: M.databaseUrl })
  .nullable()
  .meta({ description: "The tenant's own database as a postgres:// or postgresql:// URL (checked to connect as a role under RLS), or null for the shared database.", examples: [null] });

function isPostgresUrl(value: string): boolean {
  try {
    return ['postgres:', 'postgresql:'].includes(new URL(value).protocol);
  } catch {
    return false;
  }
}

/**
 * A tenant id of the given type, checked by canonicalTenantId itself. `wire`: the JSON forms only
 * (a bigint id is then a safe integer or a string of digits; a JavaScript BigInt is for programs).
 */
function tenantIdSchema(type: TenantIdType, wire: boolean) {
  const message = (iss: { input?: unknown }) => (iss.input === undefined && type === 'text' ? M.idRequired : `\`id\` must be a tenant id of type ${type}`);
  const forms =
    type === 'bigint'
      ? wire
        ? z.union([z.int(), z.string().regex(/^-?[0-9]{1,19}$/)], { error: message })
        : z.union([z.int(), z.string(), z.bigint()], { error: message })
      : type === 'text'
        ? z.string({ error: message }).min(1).max(MAX_TEXT_TENANT_ID_LENGTH).regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/)
        : z.string({ error: message }).max(45);
  const description = {
    uuid: 'A UUID; braces, `urn:uuid:`, upper case and missing hyphens are accepted and stored in the canonical lower-case hyphenated form. Default: generated.',
    bigint: 'An integer within the bigint range, as a number (safe integers) or a string of digits. Default: generated.',
    text: 'Required: 1 to 128 of letters, digits, `_`, `.` and `-`, starting with a letter or digit; stored lower-cased.',
  }[type];
  return forms
    .superRefine((value, ctx) => {
      try {
        canonicalTenantId(value, type);
      } catch (error) {
        ctx.addIssue({ code: 'custom', message: `\`id\`: ${(error as Error).message}`, params: { tenantId: true } });
      }
    })
    .meta({ description });
}

export interface TenantSchemaOptions {
  /** Only what JSON can carry (the OpenAPI document); default false (a program may pass a BigInt id). */
  readonly wire?: boolean;
}

const cache = new Map<string, z.ZodType>();
function cached<T extends z.ZodType>(key: string, build: () => T): T {
  let schema = cache.get(key);
  if (!schema) cache.set(key, (schema = build()));
  return schema as T;
}

const strict = <S extends z.core.$ZodLooseShape>(shape: S) =>
  z.strictObject(shape, {
    error: (iss) => (iss.code === 'unrecognized_keys' ? `unknown field \`${(iss as { keys: string[] }).keys[0]}\`` : M.object),
  });

/** What TenantAdminService.createTenant accepts (`POST /admin/tenants`). */
export function newTenantSchema(type: TenantIdType, options: TenantSchemaOptions = {}) {
  const wire = options.wire === true;
  return cached(`new:${type}:${wire}`, () =>
    strict({
      id: type === 'text' ? tenantIdSchema(type, wire) : tenantIdSchema(type, wire).optional(),
      slug,
      name,
      domain: domain.optional(),
      plan: plan.optional(),
      metadata: metadata.optional(),
      databaseUrl: databaseUrl.optional(),
    }).meta({ title: 'NewTenant', description: 'A tenant to create. Unknown fields are refused.' }),
  );
}

/** What TenantAdminService.updateTenant accepts (`PATCH /admin/tenants/:id`): any of the fields, the id never. */
export function tenantPatchSchema() {
  return cached('patch', () =>
    strict({
      slug: slug.optional(),
      name: name.optional(),
      domain: domain.optional(),
      plan: plan.optional(),
      metadata: metadata.optional(),
      databaseUrl: databaseUrl.optional(),
    }).meta({ title: 'TenantPatch', description: 'The fields to change (at least one). The id cannot be changed; unknown fields are refused.' }),
  );
}

/**
 * Checks `input` against `schema` and returns it as it came (the schemas transform nothing), or
 * throws: InvalidTenantIdError for a malformed `id`, else TenantInputError whose message joins the
 * issues' messages (each names its field) and whose `issues` lists them by field.
 */
export function parseTenantInput<T>(schema: z.ZodType, input: unknown): T {
  const result = schema.safeParse(input);
  if (result.success) return input as T;
  let issues: FieldIssue[] = result.error.issues.flatMap((issue) =>
    issue.code === 'unrecognized_keys'
      ? issue.keys.map((key) => ({ field: key, message: `unknown field \`${key}\`` }))
      : [{ field: issue.path.map(String).join('.'), message: issue.message }],
  );
  // A value can fail two checks with one message (a pattern and the function it documents): once.
  const seen = new Set<string>();
  issues = issues.filter((issue) => !seen.has(`${issue.field}\n${issue.message}`) && seen.add(`${issue.field}\n${issue.message}`));
  const id = issues.find((issue) => issue.field === 'id' && issue.message !== M.idRequired);
  if (id) throw new InvalidTenantIdError(id.message);
  throw new TenantInputError(issues.map((issue) => issue.message).join('; '), { issues });
}
