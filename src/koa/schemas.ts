import { z } from 'zod';

/**
 * The admin API's other bodies and its responses, as zod schemas: the move bodies are validated
 * with them (src/koa/migration-router.ts, src/koa/portability-router.ts); the responses are
 * described by them in the OpenAPI document (src/koa/openapi.ts). The tenants' own input schemas
 * are the core's (src/tenant-schema.ts).
 */

const strict = <S extends z.core.$ZodLooseShape>(shape: S) =>
  z.strictObject(shape, {
    error: (iss) => (iss.code === 'unrecognized_keys' ? `unknown field \`${(iss as { keys: string[] }).keys[0]}\`` : 'the body must be a JSON object'),
  });

const TARGET = '`target` must name a configured target database';
const target = z.string({ error: TARGET }).min(1, { error: TARGET }).meta({ description: 'The name of a target database configured on the server (never a URL).', examples: ['eu'] });

/** `POST /tenants/:id/move` of createPortabilityRouter: a durable move job. */
export const moveJobBodySchema = strict({
  target,
  copyMode: z.boolean({ error: '`copyMode` must be a boolean' }).optional().meta({ description: 'Copy and keep the source rows (default false: move).' }),
});

/** `POST /tenants/:id/move` of createMigrationRouter: a move in the request. */
export const moveBodySchema = strict({
  target,
  deleteSource: z.boolean({ error: '`deleteSource` must be a boolean' }).optional().meta({ description: 'Delete the rows at the source once copied (default false).' }),
});

const timestamp = z.string().meta({ format: 'date-time' });

// The registry's statuses; keep in step with TenantStatus (src/tenants.ts).
export const tenantStatusSchema = z
  .enum(['provisioning', 'active', 'suspended', 'deleted'])
  .meta({ description: 'Only `active` tenants are served; `provisioning` while the onboarding runs; `deleted` is final.' });

export const tenantSchema = z
  .object({
    id: z.string().meta({ description: 'The canonical tenant id.' }),
    slug: z.string(),
    name: z.string(),
    domain: z.string().nullable(),
    status: tenantStatusSchema,
    plan: z.string(),
    metadata: z.record(z.string(), z.unknown()),
    databaseUrl: z.string().nullable().meta({ description: "The tenant's own database, its password shown as `***`; null for the shared database." }),
    createdAt: timestamp,
    updatedAt: timestamp,
  })
  .meta({ title: 'Tenant', description: 'A row of the tenants registry.' });

export const tenantListSchema = z
  .object({
    tenants: z.array(tenantSchema),
    next: z.string().optional().meta({ description: 'Pass as `after` for the next page; absent on the last page.' }),
  })
  .meta({ title: 'TenantList' });

export const problemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.int(),
    detail: z.string().optional().meta({ description: 'What is wrong; for invalid input it names the field in backticks.' }),
    code: z.string().optional().meta({ description: "The library's stable error code, e.g. `LBMT_TENANT_INPUT_INVALID`.", examples: ['LBMT_TENANT_INPUT_INVALID'] }),
    errors: z
      .array(z.object({ detail: z.string(), pointer: z.string().meta({ description: 'The field, as `#/<field>`.', examples: ['#/slug'] }) }))
      .optional()
      .meta({ description: 'Each refused field of an invalid input.' }),
  })
  .meta({ title: 'Problem', description: 'RFC 9457 problem details (application/problem+json).' });

export const purgeReportSchema = z
  .object({
    tenantId: z.string(),
    tables: z.array(
      z.object({
        table: z.string(),
        column: z.string(),
        configured: z.boolean(),
        deleted: z.int(),
        remaining: z.int().nullable().meta({ description: 'Rows of the tenant counted after the delete; null when the count failed.' }),
        error: z.string().optional(),
      }),
    ),
    complete: z.boolean(),
  })
  .meta({ title: 'PurgeReport', description: 'Table by table, children before parents: what was deleted and what remains.' });

const tableDigest = z.looseObject({ table: z.string() });

export const moveJobSchema = z
  .object({
    id: z.string(),
    tenantId: z.string(),
    target: z.string(),
    copyMode: z.boolean(),
    step: z.enum(['created', 'frozen', 'copied', 'verified', 'switched', 'invalidated', 'cleaned']),
    state: z.enum(['running', 'succeeded', 'failed']),
    tables: z.array(tableDigest).nullable(),
    error: z.object({ code: z.string(), message: z.string() }).nullable(),
    attempts: z.int(),
    createdAt: timestamp,
    updatedAt: timestamp,
    finishedAt: timestamp.nullable(),
  })
  .meta({ title: 'MoveJob', description: 'A durable tenant move: its last completed step, state, per-table rows and checksums.' });

export const importResultSchema = z
  .object({
    counts: z.record(z.string(), z.int()),
    tables: z.array(tableDigest),
    dryRun: z.boolean(),
  })
  .meta({ title: 'ImportResult' });

export const tenantExportSchema = z
  .object({
    tenantId: z.string(),
    exportedAt: timestamp,
    tables: z.array(z.object({ table: z.string(), columns: z.array(z.string()), rows: z.array(z.array(z.unknown())) })),
    counts: z.record(z.string(), z.int()),
  })
  .meta({ title: 'TenantExport', description: "The tenant's rows as JSON (a dry run, for inspection)." });

export const moveResultSchema = z.looseObject({}).meta({ title: 'MoveResult', description: 'What the move copied, per table.' });

const auditEntrySchema = z.object({
  id: z.string().meta({ description: 'Increasing with each row; pages go by it.' }),
  occurredAt: timestamp,
  actor: z.string(),
  action: z.string().meta({ examples: ['suspend'] }),
  tenantId: z.string().nullable(),
  before: z.record(z.string(), z.unknown()).nullable().meta({ description: 'The tenant before the action (database URL without its password).' }),
  after: z.record(z.string(), z.unknown()).nullable().meta({ description: 'The tenant after it, or what the action produced (a purge report, a move job).' }),
  reason: z.string().nullable(),
});

/** `GET /audit/tail` of createAdminRouter: the audit log in commit order (src/audit.ts tailAudit). */
export const auditTailSchema = z
  .object({
    entries: z.array(auditEntrySchema),
    next: z.string().meta({ description: 'Pass as `after` on the next call.' }),
  })
  .meta({ title: 'AuditTail', description: 'Audit rows, oldest first, in the order their transactions ended.' });

/** `GET /audit` of createAdminRouter: a page of the audit log (src/audit.ts). */
export const auditPageSchema = z
  .object({
    entries: z.array(auditEntrySchema),
    next: z.string().optional().meta({ description: 'Pass as `after` for the next (older) page; absent on the last page.' }),
  })
  .meta({ title: 'AuditPage', description: 'Audit rows, newest first.' });
