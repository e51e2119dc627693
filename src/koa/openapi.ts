import type Router from '@koa/router';
import { z } from 'zod';
import { newTenantSchema, tenantPatchSchema } from '../tenant-schema.js';
import type { TenantIdType } from '../tenant-id.js';
import { EXPORT_MEDIA_TYPE } from '../portability/format.js';
import { AUDIT_ACTIONS } from '../audit.js';
import { AUDIT_REASON_HEADER } from './audit.js';
import {
  auditPageSchema,
  auditTailSchema,
  importResultSchema,
  moveBodySchema,
  moveJobBodySchema,
  moveJobSchema,
  moveResultSchema,
  problemSchema,
  purgeReportSchema,
  tenantExportSchema,
  tenantListSchema,
  tenantSchema,
  tenantStatusSchema,
} from './schemas.js';

/**
 * The OpenAPI 3.1 document of the admin API, generated from the zod schemas the routes validate
 * with (z.toJSONSchema, JSON Schema draft 2020-12: OpenAPI 3.1's schema dialect). It lists the
 * routes the given routers actually registered — walked from `router.stack`, each known by its
 * route name, which is its operationId — so a route cannot be documented that is not served.
 */

export interface OpenApiOptions {
  /** The type of tenant ids (the service's tenancy): how the `id` field and path parameter are described. */
  readonly tenantIdType: TenantIdType;
  /** The routers whose routes are documented: the admin router, and the portability or migration router mounted under the same prefix. */
  readonly routers: readonly Router[];
  /** Default `{ title: 'linkbay-multitenant admin API', version: '1.0.0' }`. */
  readonly info?: { readonly title?: string; readonly version?: string; readonly description?: string };
  /**
   * How `authorize` authenticates, as OpenAPI security schemes, e.g.
   * `{ adminToken: { type: 'http', scheme: 'bearer' } }`; each becomes an alternative requirement
   * of every operation. Default none (the document cannot know what `authorize` checks).
   */
  readonly securitySchemes?: Readonly<Record<string, Record<string, unknown>>>;
}

type Component = 'NewTenant' | 'TenantPatch' | 'Tenant' | 'TenantList' | 'Problem' | 'PurgeReport' | 'MoveJobRequest' | 'MoveJob' | 'MoveRequest' | 'MoveResult' | 'ImportResult' | 'TenantExport' | 'AuditPage' | 'AuditTail';

interface Reply {
  readonly description: string;
  readonly schema?: Component;
  /** Default application/json (application/problem+json for a Problem). */
  readonly mediaType?: string;
}

interface OperationDoc {
  readonly summary: string;
  readonly description?: string;
  readonly tag: 'tenants' | 'tenant data' | 'meta';
  readonly query?: ReadonlyArray<{ name: string; description: string; required?: boolean; schema: Record<string, unknown> }>;
  readonly body?: { readonly schema: Component } | { readonly mediaType: string; readonly description: string };
  readonly responses: Readonly<Record<string, Reply>>;
}

const problem = (description: string): Reply => ({ description, schema: 'Problem' });
const tenant = (description: string): Reply => ({ description, schema: 'Tenant' });

/** Every documented route, by its route name (= operationId). */
const OPERATIONS: Readonly<Record<string, OperationDoc>> = {
  createTenant: {
    summary: 'Create a tenant',
    tag: 'tenants',
    body: { schema: 'NewTenant' },
    responses: { 201: tenant('The tenant, active (or after onboarding).'), 409: problem('Another tenant has this id, slug or domain.') },
  },
  listTenants: {
    summary: 'List tenants in creation order',
    tag: 'tenants',
    query: [
      { name: 'status', description: 'Only tenants with this status.', schema: { type: 'string', enum: tenantStatusSchema.options } },
      { name: 'limit', description: 'Page size, 1 to 1000 (default 100).', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
      { name: 'after', description: 'The `next` of the previous page.', schema: { type: 'string' } },
    ],
    responses: { 200: { description: 'One page.', schema: 'TenantList' } },
  },
  getTenant: { summary: 'Read a tenant', tag: 'tenants', responses: { 200: tenant('The tenant.') } },
  updateTenant: {
    summary: 'Change a tenant',
    tag: 'tenants',
    body: { schema: 'TenantPatch' },
    responses: { 200: tenant('The changed tenant.'), 409: problem('Another tenant has this slug or domain.') },
  },
  suspendTenant: { summary: 'Suspend a tenant (its requests are refused with 403)', tag: 'tenants', responses: { 200: tenant('The suspended tenant.') } },
  activateTenant: { summary: 'Activate a suspended tenant', tag: 'tenants', responses: { 200: tenant('The active tenant.') } },
  deleteTenant: {
    summary: 'Delete a tenant (soft: refused everywhere at once; the row stays)',
    tag: 'tenants',
    responses: { 204: { description: 'Deleted.' } },
  },
  purgeTenant: {
    summary: "Remove a deleted tenant's rows from every table that has the tenant column",
    tag: 'tenants',
    responses: {
      200: { description: 'Every table counted at zero rows of the tenant afterwards.', schema: 'PurgeReport' },
      500: problem('LBMT_PURGE_INCOMPLETE: the problem carries the `report`; fix the cause and run it again.'),
    },
  },
  listAudit: {
    summary: 'The audit log, newest first',
    description: `Every admin action, written in its transaction: who (the actor of \`authorize\`), what, which tenant, before and after, when, and why (the \`${AUDIT_REASON_HEADER}\` header of the request).`,
    tag: 'tenants',
    query: [
      { name: 'tenant', description: 'Only rows about this tenant.', schema: { type: 'string' } },
      { name: 'action', description: 'Only this action.', schema: { type: 'string', enum: [...AUDIT_ACTIONS] } },
      { name: 'actor', description: 'Only this actor.', schema: { type: 'string' } },
      { name: 'since', description: 'From this moment (inclusive), ISO 8601 with a zone.', schema: { type: 'string', format: 'date-time' } },
      { name: 'until', description: 'Before this moment (exclusive), ISO 8601 with a zone.', schema: { type: 'string', format: 'date-time' } },
      { name: 'limit', description: 'Page size, 1 to 1000 (default 100).', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
      { name: 'after', description: 'The `next` of the previous page.', schema: { type: 'string' } },
    ],
    responses: { 200: { description: 'One page.', schema: 'AuditPage' } },
  },
  tailAudit: {
    summary: 'The audit log in commit order, for a consumer that follows it',
    description:
      "Oldest first, the rows after the cursor `after`, in the order their transactions ended: a row never appears before a cursor already handed out (the list's ids are taken at INSERT, so a long transaction's row can appear behind a consumer polling it). Rows written while an older write transaction runs on the server wait for it to end.",
    tag: 'tenants',
    query: [
      { name: 'after', description: 'The `next` of the previous call; none: from the beginning.', schema: { type: 'string' } },
      { name: 'limit', description: 'At most this many rows, 1 to 1000 (default 100).', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
    ],
    responses: { 200: { description: 'The next rows, and the cursor to go on from.', schema: 'AuditTail' } },
  },
  getOpenApiDocument: {
    summary: 'This document',
    tag: 'meta',
    responses: { 200: { description: 'The OpenAPI 3.1 document of the admin API.' } },
  },
  exportTenant: {
    summary: "Export the tenant's rows, streamed",
    tag: 'tenant data',
    responses: { 200: { description: 'The export format: NDJSON, a header, rows, a trailer with digests.', mediaType: EXPORT_MEDIA_TYPE } },
  },
  importTenant: {
    summary: 'Import an export, streamed, in one transaction',
    tag: 'tenant data',
    query: [
      { name: 'into', description: 'A configured import target.', required: true, schema: { type: 'string' } },
      { name: 'mode', description: 'insert (default) or upsert.', schema: { type: 'string', enum: ['insert', 'upsert'], default: 'insert' } },
      { name: 'dryRun', description: 'Check and count without writing.', schema: { type: 'string', enum: ['true', 'false'], default: 'false' } },
    ],
    body: { mediaType: EXPORT_MEDIA_TYPE, description: 'An export (its own size limit, `maxImportBytes`; not buffered).' },
    responses: { 200: { description: 'Rows per table and their digests.', schema: 'ImportResult' } },
  },
  startTenantMove: {
    summary: 'Move a tenant to a configured database, as a durable job',
    tag: 'tenant data',
    body: { schema: 'MoveJobRequest' },
    responses: { 202: { description: 'The job; `Location` is its URL.', schema: 'MoveJob' }, 409: problem('The tenant is already being moved.') },
  },
  getMoveJob: { summary: 'Read a move job', tag: 'tenant data', responses: { 200: { description: 'The job.', schema: 'MoveJob' } } },
  exportTenantData: {
    summary: "The tenant's rows as JSON, with counts (a dry run)",
    tag: 'tenant data',
    responses: { 200: { description: 'The rows.', schema: 'TenantExport' } },
  },
  moveTenant: {
    summary: 'Copy or move a tenant to a configured database',
    tag: 'tenant data',
    body: { schema: 'MoveRequest' },
    responses: { 200: { description: 'What was copied.', schema: 'MoveResult' } },
  },
};

/** Route names this module documents (the routers name their routes with them). */
export const DOCUMENTED_ROUTES: readonly string[] = Object.keys(OPERATIONS);

function components(tenantIdType: TenantIdType): Record<Component, Record<string, unknown>> {
  const registry = z.registry<{ id: string }>();
  const add = (schema: z.ZodType, id: Component) => registry.add(schema, { id });
  add(newTenantSchema(tenantIdType, { wire: true }), 'NewTenant');
  add(tenantPatchSchema(), 'TenantPatch');
  add(tenantSchema, 'Tenant');
  add(tenantListSchema, 'TenantList');
  add(problemSchema, 'Problem');
  add(purgeReportSchema, 'PurgeReport');
  add(moveJobBodySchema, 'MoveJobRequest');
  add(moveJobSchema, 'MoveJob');
  add(moveBodySchema, 'MoveRequest');
  add(moveResultSchema, 'MoveResult');
  add(importResultSchema, 'ImportResult');
  add(tenantExportSchema, 'TenantExport');
  add(auditPageSchema, 'AuditPage');
  add(auditTailSchema, 'AuditTail');
  const { schemas } = z.toJSONSchema(registry, { target: 'draft-2020-12', io: 'input', uri: (id) => `#/components/schemas/${id}` });
  // Each is a component of the document, not a JSON Schema document of its own.
  for (const schema of Object.values(schemas)) {
    delete schema.$schema;
    delete schema.$id;
  }
  return schemas as Record<Component, Record<string, unknown>>;
}

const ref = (component: Component) => ({ $ref: `#/components/schemas/${component}` });

function content(reply: Reply): Record<string, unknown> | undefined {
  if (!reply.schema) return reply.mediaType ? { [reply.mediaType]: {} } : undefined;
  const mediaType = reply.mediaType ?? (reply.schema === 'Problem' ? 'application/problem+json' : 'application/json');
  return { [mediaType]: { schema: ref(reply.schema) } };
}

/** The ordinary refusals, shared by the operations as `components.responses`. */
const REFUSALS = {
  InvalidTenantId: problem('Not a tenant id of the configured type (LBMT_INVALID_TENANT_ID); a body\'s `id` is named in `detail`.'),
  Unauthorized: problem('No or invalid credentials (refused by `authorize`).'),
  Forbidden: problem('Credentials without the right (refused by `authorize`), or a row of another tenant.'),
  NotFound: problem('No such tenant (or job).'),
  ContentTooLarge: problem('The body is larger than the limit.'),
  UnsupportedMediaType: problem('The body is not of the media type the operation reads.'),
  InvalidInput: problem('Invalid input (LBMT_TENANT_INPUT_INVALID): `detail` and `errors` name each refused field.'),
  ServerError: problem('An unexpected error (nothing about it is shown).'),
} satisfies Record<string, Reply>;

/** The refusals of an operation, by status: authorization, its path parameter, its body. */
function refusals(doc: OperationDoc, params: readonly string[], tenantId: boolean): Record<string, keyof typeof REFUSALS> {
  const out: Record<string, keyof typeof REFUSALS> = { 401: 'Unauthorized', 403: 'Forbidden' };
  if (tenantId || doc.body) out[400] = 'InvalidTenantId';
  if (params.length > 0) out[404] = 'NotFound';
  if (doc.body) Object.assign(out, { 413: 'ContentTooLarge', 415: 'UnsupportedMediaType' });
  if (doc.body || doc.query) out[422] = 'InvalidInput';
  out[500] = 'ServerError';
  return out;
}

function response(reply: Reply): Record<string, unknown> {
  const body = content(reply);
  return body ? { description: reply.description, content: body } : { description: reply.description };
}

/**
 * Builds the document. Routes whose name is not a documented operation (a route of your own on
 * the admin router) are left out; HEAD, which @koa/router adds to each GET, is not listed.
 *
 * @example
 * const doc = openApiDocument({ tenantIdType: 'uuid', routers: [adminRouter, portabilityRouter] });
 */
export function openApiDocument(options: OpenApiOptions): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const router of options.routers) {
    for (const layer of router.stack) {
      const doc = typeof layer.name === 'string' ? OPERATIONS[layer.name] : undefined;
      // A route's path is a string unless it was registered as a RegExp (not one of the library's).
      if (!doc || layer.methods.length === 0 || typeof layer.path !== 'string') continue;
      const params = layer.paramNames.map((p) => String(p.name));
      const path = layer.path.replace(/:(\w+)/g, '{$1}');
      const tenantId = /\/tenants\/\{id\}/.test(path);
      const item = (paths[path] ??= {});
      for (const method of layer.methods) {
        if (method === 'HEAD' || item[method.toLowerCase()]) continue;
        const responses: Record<string, unknown> = {};
        for (const [status, name] of Object.entries(refusals(doc, params, tenantId))) responses[status] = { $ref: `#/components/responses/${name}` };
        for (const [status, reply] of Object.entries(doc.responses)) responses[status] = response(reply);
        const ordered = Object.fromEntries(Object.entries(responses).sort(([a], [b]) => a.localeCompare(b)));
        item[method.toLowerCase()] = {
          operationId: layer.name,
          summary: doc.summary,
          ...(doc.description ? { description: doc.description } : {}),
          tags: [doc.tag],
          parameters: [
            ...params.map((name) => ({
              name,
              in: 'path',
              required: true,
              schema: { type: 'string' },
              description: tenantId && name === 'id' ? `The tenant id (${options.tenantIdType}).` : 'The job id.',
            })),
            ...(doc.query ?? []).map((q) => ({ name: q.name, in: 'query', required: q.required === true, description: q.description, schema: q.schema })),
          ],
          ...(doc.body
            ? {
                requestBody: {
                  required: true,
                  content: 'schema' in doc.body ? { 'application/json': { schema: ref(doc.body.schema) } } : { [doc.body.mediaType]: { schema: { type: 'string' } } },
                  ...('description' in doc.body ? { description: doc.body.description } : {}),
                },
              }
            : {}),
          responses: ordered,
        };
      }
    }
  }
  const schemes = options.securitySchemes ?? {};
  return {
    openapi: '3.1.1',
    info: { title: 'linkbay-multitenant admin API', version: '1.0.0', ...options.info },
    tags: [
      { name: 'tenants', description: 'The tenants registry and its lifecycle.' },
      { name: 'tenant data', description: "A tenant's rows: export, import, move." },
      { name: 'meta', description: 'About the API itself.' },
    ],
    paths,
    components: {
      schemas: components(options.tenantIdType),
      responses: Object.fromEntries(Object.entries(REFUSALS).map(([name, reply]) => [name, response(reply)])),
      ...(Object.keys(schemes).length ? { securitySchemes: schemes } : {}),
    },
    ...(Object.keys(schemes).length ? { security: Object.keys(schemes).map((name) => ({ [name]: [] })) } : {}),
  };
}
