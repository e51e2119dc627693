import type { GuardCatalog } from './catalog.js';
import { GUARD_TOO_COMPLEX, type GuardViolation } from './errors.js';
import type { SourceContext } from './expressions.js';
import { candidateKey, type Candidate, type Requirement, type Verdict } from './verdict.js';

/**
 * The state of analysing one SQL text: what it found so far (violations, per-execution checks)
 * and what it analyses against (catalog, tenancy). Locations from the parser are byte offsets;
 * violations carry character offsets.
 */
export class Analysis {
  readonly violations: GuardViolation[] = [];
  readonly requirements: Requirement[] = [];
  private nextId = 0;
  private readonly ascii: boolean;
  private spent = 0;
  /** Character offset of every byte offset (built once, for texts that are not ASCII). */
  private charOffsets: Uint32Array | undefined;
  /** Location of the statement being analysed, for clauses the parser gives no location. */
  statementLocation = 0;

  constructor(
    readonly catalog: GuardCatalog,
    readonly source: SourceContext,
    readonly text: string,
    /** Work units (nodes walked, facts resolved, terms propagated) the analysis may spend. */
    readonly budget: number = Number.POSITIVE_INFINITY,
  ) {
    // eslint-disable-next-line no-control-regex
    this.ascii = !/[^\x00-\x7f]/.test(text);
  }

  /** Counts `units` of work; past the budget the analysis is abandoned (GuardBudgetExceeded). */
  spend(units: number): void {
    this.spent += units;
    if (this.spent > this.budget) throw new GuardBudgetExceeded(this.budget);
  }

  newId(): number {
    this.nextId += 1;
    return this.nextId;
  }

  refuse(reason: string, location: number | undefined, table?: string): void {
    const at = this.charOffset(location === undefined || location < 0 ? this.statementLocation : location);
    this.violations.push(table === undefined ? { reason, location: at } : { table, reason, location: at });
  }

  /** A refusal for size or complexity: the statement was not (fully) analysed. */
  refuseTooComplex(reason: string): void {
    this.violations.push({ reason, location: 0, code: GUARD_TOO_COMPLEX });
  }

  /** Records that `candidates` must hold one value equal to the tenant; refuses when there is none. */
  require(candidates: readonly Candidate[], table: string, location: number | undefined, what: Requirement['what'], reason: string): void {
    if (candidates.length === 0) {
      this.refuse(reason, location, table);
      return;
    }
    if (candidates.some((c) => c.kind === 'always')) return;
    const at = this.charOffset(location === undefined || location < 0 ? this.statementLocation : location);
    this.requirements.push({ candidates, table, location: at, what });
  }

  /** For trial runs (recursive CTE fixpoints): what has been recorded so far. */
  mark(): readonly [number, number] {
    return [this.violations.length, this.requirements.length];
  }

  rollback(mark: readonly [number, number]): void {
    this.violations.length = mark[0];
    this.requirements.length = mark[1];
  }

  /** The verdict to cache: requirements with the same candidates are checked once. */
  verdict(): Verdict {
    const seen = new Set<string>();
    const requirements: Requirement[] = [];
    for (const r of this.requirements) {
      const key = r.candidates.map(candidateKey).sort().join(',');
      if (seen.has(key)) continue;
      seen.add(key);
      requirements.push(Object.freeze(r));
    }
    return Object.freeze({ violations: Object.freeze([...this.violations]), requirements: Object.freeze(requirements) });
  }

  private charOffset(byteOffset: number): number {
    if (this.ascii || byteOffset <= 0) return Math.max(0, byteOffset);
    // One pass over the text for all violations: refusing many of them stays linear.
    if (!this.charOffsets) {
      const offsets = new Uint32Array(Buffer.byteLength(this.text, 'utf8') + 1);
      let byte = 0;
      for (let i = 0; i < this.text.length; i += 1) {
        const code = this.text.codePointAt(i)!;
        const bytes = code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
        for (let k = 0; k < bytes; k += 1) offsets[byte + k] = i;
        byte += bytes;
        if (code >= 0x10000) i += 1;
      }
      offsets[byte] = this.text.length;
      this.charOffsets = offsets;
    }
    return this.charOffsets[Math.min(byteOffset, this.charOffsets.length - 1)]!;
  }
}

/** Thrown (and caught by the guard) when a statement's analysis would exceed its budget. */
export class GuardBudgetExceeded extends Error {
  constructor(readonly budget: number) {
    super(`the analysis exceeded its budget of ${budget} steps`);
    this.name = 'GuardBudgetExceeded';
  }
}
