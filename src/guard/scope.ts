import type { Node } from 'libpg-query';
import type { Analysis } from './analysis.js';
import { tableName, type GuardedTable } from './catalog.js';
import { equalityPairs, sourceCandidate, stringOf } from './expressions.js';
import { ALWAYS, candidateKey, type Candidate } from './verdict.js';

/**
 * Name resolution and "which values can this column hold" for one query level (a SELECT's FROM,
 * an UPDATE's target and FROM, ...).
 *
 * Each FROM item has the fact groups that apply to its rows: the scope's WHERE, and the ON of
 * every join above it that filters its side (both sides of an inner join, the nullable side of an
 * outer join, neither side of a full join). Every row of the item that can influence the result
 * satisfies all of them at once, so equalities in them chain: `c.tenant_id = o.tenant_id AND
 * o.tenant_id = $1` binds both. A reference to a guarded table is safe when its tenant column is
 * bound to the tenant this way.
 */

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
    const out = [...this.given];
    for (const condition of this.conditions) {
      for (const [left, right] of equalityPairs(condition)) {
        const a = this.scope.term(left);
        const b = a && this.scope.term(right);
        if (a && b) out.push([a, b]);
      }
    }
    this.resolved = out;
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
  /** The alias of an aliased join (`(a JOIN b ON ...) AS j`): stands for the join's columns. */
  readonly joinAlias?: boolean;
}

/** A FROM item (table, subquery, CTE reference, function) of a scope. */
export class Item {
  readonly id: number;
  readonly groups: FactGroup[] = [];
  /** Inside an aliased join: qualified references cannot name it. */
  hidden = false;
  private outputsMemo: OutputColumns | undefined;
  private pairsMemo: ReadonlyArray<readonly [Term, Term]> | undefined;

  constructor(
    readonly scope: Scope,
    readonly init: ItemInit,
  ) {
    this.id = scope.analysis.newId();
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
    if (this.pairsMemo) return this.pairsMemo;
    const out: Array<readonly [Term, Term]> = [];
    for (const group of this.groups) out.push(...group.pairs());
    this.pairsMemo = out;
    return out;
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

// Bound on the candidate search; the chains in real statements are a handful of columns long.
const MAX_VISITED = 128;

/** A query level: its FROM items, its CTE names, and a link to the enclosing level. */
export class Scope {
  readonly items: Item[] = [];
  readonly ctes = new Map<string, { outputs: OutputColumns }>();
  /** Joins with USING/NATURAL merge columns, so `*` positions are unknown. */
  mergedColumns = false;

  constructor(
    readonly analysis: Analysis,
    readonly parent: Scope | undefined,
  ) {}

  add(init: ItemInit): Item {
    const item = new Item(this, init);
    this.items.push(item);
    return item;
  }

  lookupCte(name: string): { outputs: OutputColumns } | undefined {
    for (let s: Scope | undefined = this; s; s = s.parent) {
      const cte = s.ctes.get(name);
      if (cte) return cte;
    }
    return undefined;
  }

  columnTerm(item: Item, column: string): ColumnTerm {
    return { kind: 'column', item, column, key: `${item.id}.${column}` };
  }

  /** The term an expression stands for, if it is a resolvable column or a tenant value. */
  term(node: Node): Term | undefined {
    if ('ColumnRef' in node) return this.resolveColumn(node.ColumnRef.fields ?? []);
    const candidate = sourceCandidate(node, this.analysis.source);
    return candidate ? { kind: 'source', candidate, key: candidateKey(candidate) } : undefined;
  }

  /**
   * Resolves a column reference as PostgreSQL would, innermost level first. An unqualified
   * name resolves to the only guarded table here whose tenant column has that name; ambiguous
   * or unknowable references resolve to nothing (and so constrain nothing).
   */
  resolveColumn(fields: readonly Node[]): ColumnTerm | undefined {
    const parts: string[] = [];
    for (const field of fields) {
      const s = stringOf(field);
      if (s === undefined) return undefined; // `*` or a subscript
      parts.push(s);
    }
    if (parts.length === 0) return undefined;
    const column = parts[parts.length - 1]!;
    const qualifier = parts.slice(0, -1);
    for (let s: Scope | undefined = this; s; s = s.parent) {
      const found = qualifier.length === 0 ? s.resolveUnqualified(column) : s.resolveQualified(qualifier, column);
      if (found !== 'continue') return found;
    }
    return undefined;
  }

  private resolveQualified(qualifier: readonly string[], column: string): ColumnTerm | undefined | 'continue' {
    const name = qualifier[qualifier.length - 1]!;
    const schema = qualifier.length >= 2 ? qualifier[qualifier.length - 2] : undefined;
    const matches = this.items.filter((item) => {
      if (item.hidden) return false;
      if (schema === undefined) return item.init.name === name;
      const relation = item.init.relation;
      if (!relation || relation.relname !== name || item.init.name !== name) return false;
      return (relation.schema ?? item.guarded?.schema) === schema;
    });
    if (matches.length === 0) return 'continue';
    if (matches.length > 1) return undefined;
    const item = matches[0]!;
    return this.columnTerm(item, item.columnKey(column));
  }

  private resolveUnqualified(column: string): ColumnTerm | undefined | 'continue' {
    const guarded = this.items.filter((item) => item.visibleTenantColumn() === column);
    if (guarded.length === 1) return this.columnTerm(guarded[0]!, guarded[0]!.guarded!.tenantColumn);
    if (guarded.length > 1) return undefined;
    const derived = this.items.filter((item) => item.init.kind === 'derived' && item.hasOutput(column));
    if (derived.length === 1) return this.columnTerm(derived[0]!, column);
    if (derived.length > 1) return undefined;
    // A table or function here may have a column of that name we do not know of.
    const opaque = this.items.some((item) => item.init.kind !== 'derived' || !item.outputs().exact);
    return opaque ? undefined : 'continue';
  }

  /**
   * What a term's value is known to be, for use elsewhere (another column compared to it, a
   * subquery output, a correlated reference): a bound guarded tenant column counts as the tenant
   * outright, since its own reference is checked.
   */
  valueCandidates(term: Term, visited: Set<string> = new Set()): readonly Candidate[] {
    if (term.kind === 'source') return [term.candidate];
    const candidates = this.candidates(term, visited);
    const guarded = term.item.guarded;
    if (guarded && term.column === guarded.tenantColumn) return candidates.length > 0 ? [ALWAYS] : [];
    return candidates;
  }

  /**
   * The tenant values a column is known equal to for every row of its item that matters: its own
   * binding (subquery output), plus everything its item's facts chain it to. Empty: unbound.
   */
  candidates(term: ColumnTerm, visited: Set<string>): readonly Candidate[] {
    if (visited.has(term.key) || visited.size > MAX_VISITED) return [];
    visited.add(term.key);
    const found = new Map<string, Candidate>();
    const add = (list: readonly Candidate[]) => {
      for (const c of list) found.set(candidateKey(c), c);
    };
    add(term.item.ownCandidates(term.column));
    const pairs = term.item.allPairs();
    const seen = new Set([term.key]);
    const queue: ColumnTerm[] = [term];
    while (queue.length > 0) {
      const current = queue.pop()!;
      for (const [a, b] of pairs) {
        const other = a.key === current.key ? b : b.key === current.key ? a : undefined;
        if (!other || seen.has(other.key)) continue;
        seen.add(other.key);
        if (other.kind === 'source') {
          add([other.candidate]);
        } else {
          queue.push(other);
          add(other.item.scope.valueCandidates(other, visited));
        }
      }
    }
    return [...found.values()];
  }

  /** Records, for every guarded table referenced at this level, the check its tenant filter needs. */
  requireGuardedFilters(): void {
    for (const item of this.items) {
      const guarded = item.guarded;
      if (!guarded || item.init.kind !== 'table') continue;
      const candidates = this.candidates(this.columnTerm(item, guarded.tenantColumn), new Set());
      const shown = `${item.init.name ?? guarded.table}.${item.visibleTenantColumn() ?? guarded.tenantColumn}`;
      this.analysis.require(
        candidates,
        item.label,
        item.init.location,
        'filter',
        `${item.label} is read without a tenant filter: no condition that applies to it says ${shown} = <current tenant> (an OR, NOT, outer-join ON of the other side or a filter in another query level does not count)`,
      );
    }
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
