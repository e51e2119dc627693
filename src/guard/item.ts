import type { Node } from 'libpg-query';
import { tableName, type GuardedTable } from './catalog.js';
import { equalityPairs } from './expressions.js';
import type { Scope } from './scope.js';
import { candidateKey, type Candidate } from './verdict.js';

// The pieces a Scope is made of: terms, FROM items, the fact groups that bind them, outputs.

/** A column of a FROM item, or a tenant value (`$n`, a constant, `current_setting(...)`). */
export type Term = ColumnTerm | SourceTerm;

export interface ColumnTerm {
  readonly kind: 'column';
  readonly item: Item;
  /** The item's own name for the column (alias column lists already undone). */
  readonly column: string;
  readonly key: string;
}

export interface SourceTerm {
  readonly kind: 'source';
  readonly candidate: Candidate;
  readonly key: string;
}

/** One output column of a subquery, CTE or RETURNING list, and what it is known to hold. */
export interface OutputColumn {
  readonly name: string | undefined;
  readonly candidates: readonly Candidate[];
}

export interface OutputColumns {
  readonly columns: readonly OutputColumn[];
  /** false when the list is incomplete (a `*` over a table): positions are then unknown. */
  readonly exact: boolean;
}

export const UNKNOWN_OUTPUTS: OutputColumns = Object.freeze({ columns: Object.freeze([]), exact: false });

/** Conditions that hold together for every row of the items they apply to. */
export class FactGroup {
  private resolved: Array<readonly [Term, Term]> | undefined;

  constructor(
    private readonly scope: Scope,
    private readonly conditions: readonly Node[],
    private readonly given: ReadonlyArray<readonly [Term, Term]> = [],
  ) {}

  pairs(): ReadonlyArray<readonly [Term, Term]> {
    if (this.resolved) return this.resolved;
    // Resolving before the scope has all its items would miss names (and must not be kept).
    const out = [...this.given];
    this.scope.analysis.spend(this.conditions.length + 1);
    for (const condition of this.conditions) {
      for (const [left, right] of equalityPairs(condition)) {
        const a = this.scope.term(left);
        const b = a && this.scope.term(right);
        if (a && b) out.push([a, b]);
      }
    }
    if (this.scope.sealed) this.resolved = out;
    return out;
  }
}

export type ItemKind = 'table' | 'derived' | 'opaque';

export interface ItemInit {
  readonly kind: ItemKind;
  /** The name qualified column references use (alias, else relation or CTE name); undefined when hidden. */
  readonly name: string | undefined;
  readonly location: number;
  /** For tables named without an alias: `schema.table.column` references match these. */
  readonly relation?: { readonly schema: string | undefined; readonly relname: string };
  readonly guarded?: GuardedTable;
  /** Alias column list: `AS o(a, b, c)`. */
  readonly colnames?: readonly string[];
  /** Subquery / CTE outputs, computed on first use. */
  readonly outputs?: () => OutputColumns;
  /** Columns whose values are known whatever the facts (`excluded.tenant_id`, RETURNING of INSERT). */
  readonly intrinsic?: ReadonlyMap<string, readonly Candidate[]>;
  /** The target of UPDATE / DELETE / MERGE / ON CONFLICT: not visible to LATERAL items of its FROM. */
  readonly target?: boolean;
  /** The alias of an aliased join (`(a JOIN b ON ...) AS j`): stands for the join's columns. */
  readonly joinAlias?: boolean;
}

/** A FROM item (table, subquery, CTE reference, function) of a scope. */
export class Item {
  readonly id: number;
  /** The fact groups that hold for its rows; set when its scope is sealed, shared by the items of one segment (scope.ts). */
  groups: readonly FactGroup[] = [];
  /** Set (to the analysis clock) when an aliased join around it hides it from qualified references. */
  hiddenSince: number | undefined;
  private outputsMemo: OutputColumns | undefined;

  constructor(
    readonly scope: Scope,
    readonly init: ItemInit,
    /** Index in its scope's items. */
    readonly position: number,
  ) {
    this.id = scope.analysis.newId();
  }

  /** Inside an aliased join: qualified references from outside it cannot name it. */
  get hidden(): boolean {
    return this.hiddenSince !== undefined;
  }

  get guarded(): GuardedTable | undefined {
    return this.init.guarded;
  }

  /** `schema.table` of the guarded table, for messages. */
  get label(): string {
    return this.init.guarded ? tableName(this.init.guarded) : (this.init.name ?? '?');
  }

  /** The item's own column behind a visible column name. */
  columnKey(visible: string): string {
    const { colnames, guarded } = this.init;
    if (!colnames || colnames.length === 0 || this.init.kind !== 'table') return visible;
    const i = colnames.indexOf(visible);
    if (i >= 0) return guarded && guarded.position === i + 1 ? guarded.tenantColumn : `#${i + 1}`;
    // The tenant column was renamed by the alias list (or may have been): its old name is not it.
    if (guarded && visible === guarded.tenantColumn && (guarded.position === undefined || guarded.position <= colnames.length)) {
      return `!${visible}`;
    }
    return visible;
  }

  /** The name the tenant column of a guarded table goes by here; undefined when unknown. */
  visibleTenantColumn(): string | undefined {
    const { colnames, guarded } = this.init;
    if (!guarded) return undefined;
    if (!colnames || colnames.length === 0) return guarded.tenantColumn;
    if (guarded.position === undefined) return undefined;
    return guarded.position <= colnames.length ? colnames[guarded.position - 1] : guarded.tenantColumn;
  }

  /** Output columns of a subquery or CTE, alias column list applied. */
  outputs(): OutputColumns {
    if (this.outputsMemo) return this.outputsMemo;
    if (!this.init.outputs) return UNKNOWN_OUTPUTS;
    const base = this.init.outputs();
    const colnames = this.init.colnames;
    let outputs = base;
    if (colnames && colnames.length > 0) {
      if (base.exact) {
        outputs = { columns: base.columns.map((c, i) => (i < colnames.length ? { name: colnames[i], candidates: c.candidates } : c)), exact: true };
      } else {
        outputs = { columns: colnames.map((name) => ({ name, candidates: [] })), exact: false };
      }
    }
    this.outputsMemo = outputs;
    return outputs;
  }

  /** Whether a visible column name is known to exist here (subqueries and CTEs only). */
  hasOutput(name: string): boolean {
    return this.outputs().columns.some((c) => c.name === name);
  }

  allPairs(): ReadonlyArray<readonly [Term, Term]> {
    return this.scope.pairsOf(this.groups);
  }

  /** What the item itself says a column holds (subquery outputs, intrinsic columns). */
  ownCandidates(column: string): readonly Candidate[] {
    const intrinsic = this.init.intrinsic?.get(column);
    if (intrinsic) return intrinsic;
    if (this.init.kind !== 'derived') return [];
    const matches = this.outputs().columns.filter((c) => c.name === column);
    return matches.length === 1 ? matches[0]!.candidates : [];
  }
}

/** Combines what two set-operation branches know of one column: rows come from either. */
export function eitherOf(a: readonly Candidate[], b: readonly Candidate[]): readonly Candidate[] {
  if (a.some((c) => c.kind === 'always')) return b;
  if (b.some((c) => c.kind === 'always')) return a;
  const keys = new Set(b.map(candidateKey));
  return a.filter((c) => keys.has(candidateKey(c)));
}

/** Rows in both branches (INTERSECT): either branch's knowledge holds. */
export function bothOf(a: readonly Candidate[], b: readonly Candidate[]): readonly Candidate[] {
  const found = new Map<string, Candidate>();
  for (const c of [...a, ...b]) found.set(candidateKey(c), c);
  return [...found.values()];
}
