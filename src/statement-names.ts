import { createHash } from 'node:crypto';

/** Names of the named prepared statements the batches send (src/pipeline.ts). */

const nameCache = new Map<string, string>();

/** A stable name for a statement text: `lbmt_` + 20 hex digits of its SHA-1. */
export function preparedStatementName(text: string, planClass?: string): string {
  let name = nameCache.get(text);
  if (name === undefined) {
    name = 'lbmt_' + createHash('sha1').update(text).digest('hex').slice(0, 20);
    if (nameCache.size > 10_000) nameCache.clear();
    nameCache.set(text, name);
  }
  // At most 5 + 20 + 1 + 6 + 1 + 8 = 41 characters: under the server's 63.
  return planClass === undefined ? name : `${name}_${planClass}`;
}

/** Whether one of `values` is `tenantId`, in any spelling node-postgres would send for it. */
export function namesTenant(values: readonly unknown[], tenantId: string | undefined): boolean {
  if (tenantId === undefined) return false;
  // On every statement: compare lengths first, convert only a value that could be the id.
  for (const value of values) {
    if (value === tenantId) return true;
    if (typeof value === 'string') {
      if (value.length === tenantId.length && value.toLowerCase() === tenantId) return true;
    } else if ((typeof value === 'number' || typeof value === 'bigint') && String(value) === tenantId) {
      return true;
    }
  }
  return false;
}
