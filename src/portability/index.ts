export { TenantPortability, type TenantPortabilityOptions } from './service.js';
export { exportTenantStream, type ExportStreamOptions } from './export.js';
export { importTenantStream, type ImportStreamOptions, type ImportStreamResult } from './import.js';
export { FORMAT_NAME, FORMAT_VERSION, EXPORT_MEDIA_TYPE, type ExportHeader, type ExportTable, type ExportColumn } from './format.js';
export type { ExportTrailer, TableDigest } from './checksum.js';
export { ExportFormatError, ImportTooLargeError, TenantMovingError } from './errors.js';
export { TenantMoveJobs, type TenantMoveJobsOptions, type MoveTarget } from './jobs.js';
export { MOVE_STEPS, writesFrozen, type MoveJob, type MoveStep, type MoveState } from './job-store.js';
