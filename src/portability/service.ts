import type { Readable } from 'node:stream';
import { DEFAULT_TENANCY, type TenancyConfig } from '../config.js';
import { TenancyConfigError } from '../errors.js';
import type { TenantAdminService } from '../admin.js';
import type { TenantDBPool } from '../db-pool.js';
import type { TenantPool } from '../pool.js';
import { auditContext, type AuditContext } from '../audit.js';
import { canonicalTenantId } from '../tenant-id.js';
import { observeOperation, startOperation, tenantIdOrNull } from '../tenant-operations.js';
import type { ExportTrailer } from './checksum.js';
import { exportTenantStream } from './export.js';
import { importTenantStream, type ImportStreamOptions, type ImportStreamResult } from './import.js';

export interface TenantPortabilityOptions {
  /** Where each tenant's rows are now. */
  readonly pools: TenantDBPool;
  /** The registry: which tenant, in which database. */
  readonly admin: TenantAdminService;
  /** Its `tables`, parents before children: the order rows are exported and written in. */
  readonly tenancy?: TenancyConfig;
  /**
   * Write the `export` and `import` audit rows through `admin` (its pool must be the admin role's).
   * Default true; false where no admin role is at hand (the CLI's export runs as the app role).
   */
  readonly audit?: boolean;
}

/**
 * Tenant data in and out at any size, as streams in the versioned export format
 * (src/portability/format.ts): the streaming counterpart of TenantMigrationService's in-memory
 * exportTenantData / importTenantData.
 */
export class TenantPortability {
  readonly tenancy: TenancyConfig;

  constructor(readonly options: TenantPortabilityOptions) {
    this.tenancy = options.tenancy ?? DEFAULT_TENANCY;
    if (this.tenancy.tables.length === 0) throw new TenancyConfigError('`tenancy.tables` must list the tenant tables to export');
  }

  /**
   * The tenant's rows, from the database it lives in now, as an NDJSON stream. Resolves once the
   * tenant is known (TenantNotFoundError before any byte); the stream errors if the export fails.
   * The `export` audit row is written before the first byte (the rows are read in the tenant's
   * database, not in the registry's transaction): it records that the export was handed out.
   */
  async exportTenant(tenantId: string | number | bigint, onTrailer?: (trailer: ExportTrailer) => void, audit?: AuditContext): Promise<Readable> {
    // Succeeded once the stream has ended: an export that errors or is abandoned half-read failed.
    const observer = startOperation('export', this.canonicalOrNull(tenantId));
    try {
      const stream = await this.openExport(tenantId, onTrailer, audit);
      stream.once('end', () => observer.succeeded());
      stream.once('error', (error) => observer.failed(error));
      stream.once('close', () => observer.failed(Object.assign(new Error('the export stream was closed before its end'), { name: 'AbortError' })));
      return stream;
    } catch (error) {
      observer.failed(error);
      throw error;
    }
  }

  private canonicalOrNull(tenantId: string | number | bigint): string | null {
    return tenantIdOrNull(() => canonicalTenantId(tenantId, this.tenancy.tenantIdType));
  }

  private async openExport(tenantId: string | number | bigint, onTrailer: ((trailer: ExportTrailer) => void) | undefined, audit: AuditContext | undefined): Promise<Readable> {
    const context = auditContext(audit);
    const tenant = await this.options.admin.getTenant(tenantId);
    if (this.options.audit !== false) await this.options.admin.recordAudit({ action: 'export', tenantId: tenant.id, after: { tables: this.tenancy.tables.map((t) => `${t.schema}.${t.table}`) }, context });
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    // The tenant's pool stays open (usePool) until the stream has ended or failed.
    const opened = new Promise<Readable>((resolve, reject) => {
      this.options.pools
        .usePool(tenant, async (pool) => {
          const stream = exportTenantStream(pool, tenant.id, { tenancy: this.tenancy, ...(onTrailer ? { onTrailer } : {}) });
          stream.once('close', release);
          resolve(stream);
          await held;
        })
        .catch(reject);
    });
    return opened;
  }

  /**
   * Imports an export of the tenant into the database of `targetPool` (a role under RLS that owns
   * the tables' sequences, e.g. the owner role), in one transaction: see importTenantStream. The
   * `import` audit row follows the import's outcome (its result, or the error's code): the rows go
   * into the target's transaction, which the registry's database cannot share.
   */
  async importTenant(
    tenantId: string | number | bigint,
    source: AsyncIterable<Buffer | string>,
    targetPool: TenantPool,
    options: Omit<ImportStreamOptions, 'tenancy'> & { readonly audit?: AuditContext } = {},
  ): Promise<ImportStreamResult> {
    return observeOperation('import', this.canonicalOrNull(tenantId), () => this.runImport(tenantId, source, targetPool, options));
  }

  private async runImport(
    tenantId: string | number | bigint,
    source: AsyncIterable<Buffer | string>,
    targetPool: TenantPool,
    options: Omit<ImportStreamOptions, 'tenancy'> & { readonly audit?: AuditContext },
  ): Promise<ImportStreamResult> {
    const { audit, ...importOptions } = options;
    const context = auditContext(audit);
    const tenant = await this.options.admin.getTenant(tenantId);
    let result: ImportStreamResult;
    try {
      result = await importTenantStream(targetPool, tenant.id, source, { ...importOptions, tenancy: this.tenancy });
    } catch (error) {
      const code = (error as { code?: unknown } | null)?.code;
      if (this.options.audit !== false) {
        await this.options.admin.recordAudit({ action: 'import', tenantId: tenant.id, after: { outcome: 'failed', error: typeof code === 'string' ? code : 'Error' }, context }).catch(() => undefined);
      }
      throw error;
    }
    if (this.options.audit !== false) await this.options.admin.recordAudit({ action: 'import', tenantId: tenant.id, after: { outcome: 'succeeded', ...result }, context });
    return result;
  }
}
