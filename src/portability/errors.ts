import { TenantError, type TenantErrorOptions } from '../errors.js';

/**
 * A tenant export refused by the import: not the format or version, truncated, a count or checksum
 * that does not match its rows, a table or column the target does not have. Nothing was written.
 * The message names the table, never a row's values.
 */
export class ExportFormatError extends TenantError {
  constructor(message: string, options?: TenantErrorOptions) {
    super('LBMT_EXPORT_INVALID', message, 422, true, options);
  }
}

/** An import body past its size limit; nothing was written. */
export class ImportTooLargeError extends TenantError {
  readonly maxBytes: number;
  constructor(maxBytes: number, options?: TenantErrorOptions) {
    super('LBMT_IMPORT_TOO_LARGE', `the export must be at most ${maxBytes} bytes`, 413, true, options);
    this.maxBytes = maxBytes;
  }
}

/**
 * The tenant is being moved to another database: its reads are served, its writes refused until the
 * move has switched it over. Try again after `retryAfterSeconds` (Koa: 503 with Retry-After).
 */
export class TenantMovingError extends TenantError {
  readonly retryAfterSeconds: number;
  constructor(retryAfterSeconds = 5, options?: TenantErrorOptions) {
    super('LBMT_TENANT_MOVING', 'the tenant is being moved; writes are refused until the move completes', 503, true, options);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}
