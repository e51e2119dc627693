import type { Middleware } from 'koa';
import type { TenantPool } from '../pool.js';
import { EXPORT_MEDIA_TYPE } from '../portability/format.js';
import type { TenantMoveJobs } from '../portability/jobs.js';
import type { TenantPortability } from '../portability/service.js';
import type { z } from 'zod';
import { parseTenantInput } from '../tenant-schema.js';
import { readJsonObject } from './body.js';
import { GuardedRouter } from './guarded-router.js';
import { problemDetails } from './problem.js';
import { moveJobBodySchema } from './schemas.js';
import { auditScope, type AuditActor } from './audit.js';

/** Largest import body by default. */
export const MAX_IMPORT_BYTES = 1024 * 1024 * 1024;

export interface PortabilityRouterOptions {
  /** Who may use it: throw or answer to refuse, `next()` to allow. Required. */
  authorize: Middleware;
  /** Default `/admin`. */
  prefix?: string;
  /**
   * Databases an import may write into, by name (`?into=<name>`): a pool of each as a role under RLS
   * that owns the tables' sequences (the owner role). Without any, the import route answers 404.
   */
  importTargets?: Readonly<Record<string, TenantPool>>;
  /** Largest import body, in bytes (413 past it). Default 1 GiB. */
  maxImportBytes?: number;
  /** Durable moves: `POST /tenants/:id/move` and `GET /jobs/:id`. Without it those routes answer 404. */
  jobs?: TenantMoveJobs;
  /** A move that fails in the background after its 202 (its job records the outcome). Default: ignored. */
  onMoveError?: (error: unknown) => void;
  /** Who the request is, for the audit log (export, import, move): as createAdminRouter's `actor`. */
  actor?: AuditActor;
}

/**
 * Tenant data routes over TenantPortability and TenantMoveJobs, at any size:
 *
 *   GET  /tenants/:id/export   the tenant's rows, streamed as application/x-ndjson (the export format)
 *   POST /tenants/:id/import   ?into=<name>&mode=insert|upsert&dryRun=true, body: an export, streamed
 *   POST /tenants/:id/move     { target, copyMode? } → 202 with the job, Location: the job
 *   GET  /jobs/:id             the job: step, state, per-table rows and checksums, error
 *
 * Errors are problem+json: 404 unknown tenant or job, 413 body over the limit, 415 not NDJSON,
 * 422 an export refused (LBMT_EXPORT_INVALID, nothing written) or a bad parameter, 403 a row of
 * another tenant, 409 a tenant already being moved.
 */
export function createPortabilityRouter(portability: TenantPortability, options: PortabilityRouterOptions): GuardedRouter {
  if (typeof options?.authorize !== 'function') throw new TypeError('`authorize` is required: the portability API must not be open');
  const maxBytes = options.maxImportBytes ?? MAX_IMPORT_BYTES;
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) throw new TypeError('`maxImportBytes` must be a positive integer');
  const router = new GuardedRouter({ prefix: options.prefix ?? '/admin', guards: [problemDetails(), options.authorize, auditScope(options.actor)] });

  router.get('exportTenant', '/tenants/:id/export', async (ctx) => {
    const stream = await portability.exportTenant(ctx.params.id!);
    ctx.type = EXPORT_MEDIA_TYPE;
    ctx.set('Cache-Control', 'no-store');
    ctx.attachment('tenant-export.ndjson');
    ctx.body = stream;
  });

  router.post('importTenant', '/tenants/:id/import', async (ctx) => {
    const into = ctx.query.into;
    const pools = options.importTargets ?? {};
    const pool = typeof into === 'string' && Object.hasOwn(pools, into) ? pools[into] : undefined;
    if (!pool) ctx.throw(422, '`into` must name a configured import target');
    const mode = ctx.query.mode ?? 'insert';
    if (mode !== 'insert' && mode !== 'upsert') ctx.throw(422, '`mode` must be insert or upsert');
    const dryRun = ctx.query.dryRun;
    if (dryRun !== undefined && dryRun !== 'true' && dryRun !== 'false') ctx.throw(422, '`dryRun` must be true or false');
    if (!ctx.is(EXPORT_MEDIA_TYPE)) ctx.throw(415, `send ${EXPORT_MEDIA_TYPE}`);
    if (Number(ctx.get('content-length') || 0) > maxBytes) {
      ctx.set('Connection', 'close');
      ctx.throw(413, `the export must be at most ${maxBytes} bytes`);
    }
    try {
      ctx.body = await portability.importTenant(ctx.params.id!, ctx.req, pool!, { mode: mode as 'insert' | 'upsert', dryRun: dryRun === 'true', maxBytes });
    } catch (error) {
      // The rest of the body is not read: the connection is not reused.
      if (!ctx.req.readableEnded) ctx.set('Connection', 'close');
      throw error;
    }
  });

  router.post('startTenantMove', '/tenants/:id/move', async (ctx) => {
    if (!options.jobs) ctx.throw(404);
    const body = parseTenantInput<z.infer<typeof moveJobBodySchema>>(moveJobBodySchema, await readJsonObject(ctx));
    const jobs = options.jobs!;
    const job = await jobs.start(ctx.params.id!, { target: body.target, copyMode: body.copyMode === true });
    // Run here in the background; if this instance dies, any instance's `jobs.resume()` finishes it.
    void jobs.run(job.id).catch((error: unknown) => options.onMoveError?.(error));
    ctx.status = 202;
    ctx.set('Location', `${options.prefix ?? '/admin'}/jobs/${job.id}`);
    ctx.body = job;
  });

  router.get('getMoveJob', '/jobs/:id', async (ctx) => {
    if (!options.jobs) ctx.throw(404);
    ctx.body = await options.jobs!.get(ctx.params.id!);
  });
  return router;
}
