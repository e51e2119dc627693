import { TenantError } from '../errors.js';

/** One reason the guard found a statement tenant-unsafe. */
export interface GuardViolation {
  /** The guarded table concerned (`schema.table`), when the reason is about one table reference. */
  readonly table?: string;
  /** Why the statement is unsafe, in words (never contains parameter values). */
  readonly reason: string;
  /** 0-based character offset in the statement text of the offending reference or clause. */
  readonly location: number;
  /**
   * Set when the refusal is not about tenant filters: `LBMT_GUARD_TOO_COMPLEX` when the statement
   * is longer than `maxTextLength` or its analysis would exceed `maxAnalysisSteps`.
   */
  readonly code?: string;
}

/** The code of a refusal for size or complexity (the statement was not analysed to the end). */
export const GUARD_TOO_COMPLEX = 'LBMT_GUARD_TOO_COMPLEX';

/**
 * The SQL guard refused a statement (strict mode): nothing was sent to the database. `table`,
 * `reason` and `location` describe the first violation; `violations` lists them all. The message
 * never contains parameter values. `code` is `LBMT_GUARD_REFUSED`, or `LBMT_GUARD_TOO_COMPLEX`
 * when the statement was refused for its size or complexity without being analysed to the end.
 */
export class TenantGuardError extends TenantError {
  readonly table: string | undefined;
  readonly reason: string;
  readonly location: number;
  readonly violations: readonly GuardViolation[];

  constructor(violations: readonly GuardViolation[]) {
    const first = violations[0] ?? { reason: 'the statement was refused', location: 0 };
    const where = first.table ? ` (table ${first.table}, at offset ${first.location})` : ` (at offset ${first.location})`;
    const more = violations.length > 1 ? `; and ${violations.length - 1} more` : '';
    super(first.code ?? 'LBMT_GUARD_REFUSED', `SQL guard refused the statement: ${first.reason}${where}${more}`, 500, false);
    this.table = first.table;
    this.reason = first.reason;
    this.location = first.location;
    this.violations = violations;
  }
}
