/** Limits of a tenant's registry fields, without zod (src/tenant-schema.ts), so the core can export them. */

/** Largest `metadata`, as JSON. */
export const MAX_METADATA_BYTES = 16 * 1024;
/** jsonb refuses deep nesting with a stack-depth error; well before that it is not metadata. */
export const MAX_METADATA_DEPTH = 32;
