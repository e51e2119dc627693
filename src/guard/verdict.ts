import { tryCanonicalTenantId, type TenantIdType } from '../tenant-id.js';
import type { GuardViolation } from './errors.js';

/**
 * What a tenant filter compares the tenant column to, once the statement is parsed:
 * - `always`: `current_setting('<setting>')` (the transaction's own tenant), or a column already
 *   proven to hold only the current tenant;
 * - `param`: bind parameter `$index`, whose value must equal the tenant at execution;
 * - `literal`: a constant (canonical spelling), which must equal the tenant at execution.
 */
export type Candidate =
  | { readonly kind: 'always' }
  | { readonly kind: 'param'; readonly index: number }
  | { readonly kind: 'literal'; readonly value: string };

export const ALWAYS: Candidate = Object.freeze({ kind: 'always' });

/**
 * A tenant filter the cached verdict still has to check against the values of one execution: the
 * reference is safe when any candidate equals the current tenant (all candidates are known equal
 * to the column, so one being the tenant suffices).
 */
export interface Requirement {
  readonly candidates: readonly Candidate[];
  readonly table: string;
  readonly location: number;
  /** `filter` (WHERE/ON of a reference), `insert` (a row's tenant value), `update` (SET of the tenant column). */
  readonly what: 'filter' | 'insert' | 'update';
}

/** The cached outcome of analysing one SQL text: violations whatever the values, and checks per execution. */
export interface Verdict {
  readonly violations: readonly GuardViolation[];
  readonly requirements: readonly Requirement[];
}

const NONE: readonly GuardViolation[] = Object.freeze([]);

/** The violations of one execution: the static ones, then requirements the values do not meet. */
export function evaluateVerdict(
  verdict: Verdict,
  values: readonly unknown[],
  tenantId: string | undefined,
  type: TenantIdType,
): readonly GuardViolation[] {
  const { requirements } = verdict;
  let failed: GuardViolation[] | undefined;
  for (let i = 0; i < requirements.length; i += 1) {
    const requirement = requirements[i]!;
    if (!met(requirement.candidates, values, tenantId, type)) {
      (failed ??= []).push({ table: requirement.table, reason: unmetReason(requirement, tenantId), location: requirement.location });
    }
  }
  if (!failed) return verdict.violations;
  return verdict.violations.length === 0 ? failed : [...verdict.violations, ...failed];
}

function met(candidates: readonly Candidate[], values: readonly unknown[], tenantId: string | undefined, type: TenantIdType): boolean {
  if (tenantId === undefined) return false;
  for (let i = 0; i < candidates.length; i += 1) {
    const c = candidates[i]!;
    if (c.kind === 'param') {
      if (sameTenant(values[c.index - 1], tenantId, type)) return true;
    } else if (c.kind === 'literal') {
      if (c.value === tenantId || c.value === tryCanonicalTenantId(tenantId, type)) return true;
    } else {
      return true;
    }
  }
  return false;
}

/**
 * Whether a parameter value names `tenantId` as PostgreSQL will read it: uuid and bigint values
 * compare by value (any spelling the server accepts), text values byte for byte.
 */
export function sameTenant(value: unknown, tenantId: string, type: TenantIdType): boolean {
  if (value === tenantId) return true;
  if (value === null || value === undefined) return false;
  if (type === 'text') return (typeof value === 'number' || typeof value === 'bigint') && String(value) === tenantId;
  const canonical = tryCanonicalTenantId(value, type);
  return canonical !== undefined && canonical === tryCanonicalTenantId(tenantId, type);
}

function unmetReason(requirement: Requirement, tenantId: string | undefined): string {
  const params = requirement.candidates.filter((c) => c.kind === 'param').map((c) => `$${(c as { index: number }).index}`);
  const value = params.length > 0 ? params.join(' / ') : 'a constant';
  const what =
    requirement.what === 'insert'
      ? `a row inserted sets the tenant column to ${value}`
      : requirement.what === 'update'
        ? `the statement sets the tenant column to ${value}`
        : `the tenant filter compares the tenant column to ${value}`;
  return tenantId === undefined ? `${what}, but there is no current tenant` : `${what}, which is not the current tenant`;
}

/** Canonical key of a candidate, for de-duplication. */
export function candidateKey(c: Candidate): string {
  return c.kind === 'param' ? `$${c.index}` : c.kind === 'literal' ? `'${c.value}` : '*';
}
