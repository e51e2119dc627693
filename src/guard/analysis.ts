import type { GuardCatalog } from './catalog.js';
import type { GuardViolation } from './errors.js';
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
  /** Location of the statement being analysed, for clauses the parser gives no location. */
  statementLocation = 0;

  constructor(
    readonly catalog: GuardCatalog,
    readonly source: SourceContext,
    readonly text: string,
  ) {
    // eslint-disable-next-line no-control-regex
    this.ascii = !/[^\x00-\x7f]/.test(text);
  }

  newId(): number {
    this.nextId += 1;
    return this.nextId;
  }

  refuse(reason: string, location: number | undefined, table?: string): void {
    const at = this.charOffset(location === undefined || location < 0 ? this.statementLocation : location);
    this.violations.push(table === undefined ? { reason, location: at } : { table, reason, location: at });
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
    return Buffer.from(this.text, 'utf8').subarray(0, byteOffset).toString('utf8').length;
  }
}
