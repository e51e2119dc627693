import type { Node } from 'libpg-query';
import type { Analysis } from './analysis.js';
import { sourceCandidate, stringOf } from './expressions.js';
import { Item, type ColumnTerm, type FactGroup, type ItemInit, type OutputColumns, type Term } from './item.js';
import { LevelIndex } from './level-index.js';
import { LevelSolver } from './solver.js';
import { candidateKey, type Candidate } from './verdict.js';

/**
 * Name resolution and "which values can this column hold" for one query level (a SELECT's FROM,
 * an UPDATE's target and FROM, ...).
 *
 * Each FROM item has the fact groups that apply to its rows: the scope's WHERE, the ON of every
 * join above it that filters its side (both sides of an inner join, the nullable side of an outer
 * join, neither side of a full join), and the ON of inner joins its rows are combined with through
 * inner joins (from.ts). Every row of the item that can influence the result satisfies all of them
 * at once, so equalities in them chain: `c.tenant_id = o.tenant_id AND o.tenant_id = $1` binds
 * both (solved once per level, solver.ts). A reference to a guarded table is safe when its tenant
 * column is bound to the tenant this way. Names resolve as PostgreSQL scopes them (`view`).
 */

/** Levels with more items than this resolve names through a LevelIndex instead of scanning. */
const INDEX_FROM = 16;

/** A query level: its FROM items, its CTE names, and a link to the enclosing level. */
export class Scope {
  readonly items: Item[] = [];
  readonly ctes = new Map<string, { outputs: OutputColumns }>();
  /** Joins with USING/NATURAL merge columns, so `*` positions are unknown. */
  mergedColumns = false;
  /** Every item and fact group is in place: resolutions can be kept. */
  sealed = false;
  private readonly pending: Array<() => void> = [];
  /**
   * A view sees the items [start, end) of `base` (a contiguous run: a join's items are added
   * together, and the items to the left of a LATERAL item are the ones added before it), as they
   * were hidden at `takenAt` (an aliased join hides its items from outside, not from its own ON).
   */
  private base: Scope | undefined;
  private start = 0;
  private end = 0;
  private takenAt = 0;
  private index: LevelIndex | undefined;
  /** Fact groups and the run of items [start, end) each holds for. */
  private readonly attached: Array<{ readonly groups: readonly FactGroup[]; readonly start: number; readonly end: number }> = [];
  private readonly pairsMemo = new Map<readonly FactGroup[], ReadonlyArray<readonly [Term, Term]>>();
  private solver: LevelSolver | undefined;
  private solving = false;

  constructor(
    readonly analysis: Analysis,
    readonly parent: Scope | undefined,
  ) {}

  /** Runs `fn` once the scope is sealed (subqueries in ON clauses see the whole level). */
  defer(fn: () => void): void {
    if (this.sealed) fn();
    else this.pending.push(fn);
  }

  /** Records that `groups` hold for the rows of items [start, end) that matter (default: all items so far). */
  attach(groups: readonly FactGroup[], start = 0, end = this.items.length): void {
    if (groups.length > 0 && end > start) this.attached.push({ groups, start, end });
  }

  /** Marks the items and fact groups complete, then runs what waited for that. */
  seal(): void {
    if (this.sealed) return;
    this.assignGroups();
    this.sealed = true;
    for (const fn of this.pending.splice(0)) fn();
  }

  /**
   * Gives every item the groups attached over it. Items between the same attachment boundaries
   * share one array (and so one solved set of facts): in a join of inner joins, all of them.
   */
  private assignGroups(): void {
    if (this.attached.every((a) => a.start === 0 && a.end === this.items.length)) {
      // One segment (a join of inner joins, or a single item): every item shares all groups.
      const groups = this.attached.length === 1 ? this.attached[0]!.groups : this.attached.flatMap((a) => a.groups);
      for (const item of this.items) item.groups = groups;
      return;
    }
    const cuts = [...new Set([0, this.items.length, ...this.attached.flatMap((a) => [a.start, a.end])])].sort((a, b) => a - b);
    this.analysis.spend(cuts.length * (this.attached.length + 1));
    for (let c = 0; c + 1 < cuts.length; c += 1) {
      const from = cuts[c]!;
      const to = cuts[c + 1]!;
      const groups = this.attached.filter((a) => a.start <= from && a.end >= to).flatMap((a) => a.groups);
      for (let i = from; i < to; i += 1) this.items[i]!.groups = groups;
    }
  }

  /** The equalities of a list of fact groups (memoised per shared list once the scope is sealed). */
  pairsOf(groups: readonly FactGroup[]): ReadonlyArray<readonly [Term, Term]> {
    const memo = this.pairsMemo.get(groups);
    if (memo) return memo;
    const out: Array<readonly [Term, Term]> = [];
    for (const group of groups) {
      const pairs = group.pairs();
      this.analysis.spend(pairs.length + 1);
      for (const pair of pairs) out.push(pair);
    }
    if (this.sealed) this.pairsMemo.set(groups, out);
    return out;
  }

  /**
   * What a part of this level sees of it, as PostgreSQL scopes names: the JOIN's own items for its
   * ON clause, the items to the left for a LATERAL item or a function in FROM, none for a plain
   * subquery in FROM (`view(n, n)`). Enclosing levels stay visible.
   */
  view(start: number, end: number): Scope {
    const view = new Scope(this.analysis, this.parent);
    view.base = this;
    view.start = start;
    view.end = end;
    view.takenAt = this.analysis.newId();
    view.mergedColumns = this.mergedColumns;
    view.sealed = true;
    return view;
  }

  isHidden(item: Item): boolean {
    if (item.hiddenSince === undefined) return false;
    return this.base ? item.hiddenSince < this.takenAt : true;
  }

  /** The items names here can refer to (`pick` from the level index), in the view's range. */
  private visible(pick: (index: LevelIndex) => readonly Item[] | undefined, scan: (item: Item) => boolean): readonly Item[] {
    const owner = this.base ?? this;
    const start = this.base ? this.start : 0;
    const end = this.base ? this.end : owner.items.length;
    // Small levels are scanned; an index pays off only when there are many items.
    if (!owner.sealed || owner.items.length <= INDEX_FROM) return owner.items.slice(start, end).filter(scan);
    owner.index ??= new LevelIndex(owner.items);
    const found = pick(owner.index) ?? [];
    return this.base ? found.filter((item) => item.position >= start && item.position < end) : found;
  }

  /** Whether a table or function in range may have columns the guard does not know of. */
  private anyOpaque(): boolean {
    const owner = this.base ?? this;
    const end = this.base ? this.end : owner.items.length;
    for (let i = this.base ? this.start : 0; i < end; i += 1) {
      const item = owner.items[i]!;
      if (item.init.kind !== 'derived' || !item.outputs().exact) return true;
    }
    return false;
  }

  add(init: ItemInit): Item {
    const item = new Item(this, init, this.items.length);
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
      this.analysis.spend(1);
      const found = qualifier.length === 0 ? s.resolveUnqualified(column) : s.resolveQualified(qualifier, column);
      if (found !== 'continue') return found;
    }
    return undefined;
  }

  private resolveQualified(qualifier: readonly string[], column: string): ColumnTerm | undefined | 'continue' {
    const name = qualifier[qualifier.length - 1]!;
    const schema = qualifier.length >= 2 ? qualifier[qualifier.length - 2] : undefined;
    const matches = this.visible(
      (index) => index.byName.get(name),
      (item) => item.init.name === name,
    ).filter((item) => {
      if (this.isHidden(item)) return false;
      if (schema === undefined) return true;
      const relation = item.init.relation;
      if (!relation || relation.relname !== name) return false;
      return (relation.schema ?? item.guarded?.schema) === schema;
    });
    if (matches.length === 0) return 'continue';
    if (matches.length > 1) return undefined;
    const item = matches[0]!;
    return this.columnTerm(item, item.columnKey(column));
  }

  private resolveUnqualified(column: string): ColumnTerm | undefined | 'continue' {
    const guarded = this.visible(
      (index) => index.byTenantColumn.get(column),
      (item) => item.visibleTenantColumn() === column,
    );
    if (guarded.length === 1) return this.columnTerm(guarded[0]!, guarded[0]!.guarded!.tenantColumn);
    if (guarded.length > 1) return undefined;
    const isDerived = (item: Item) => item.init.kind === 'derived';
    const derived = this.visible((index) => index.derived, isDerived).filter((item) => item.hasOutput(column));
    if (derived.length === 1) return this.columnTerm(derived[0]!, column);
    if (derived.length > 1) return undefined;
    // A table or function here may have a column of that name we do not know of.
    return this.anyOpaque() ? undefined : 'continue';
  }

  /**
   * What a term's value is known to be, for use elsewhere (another column compared to it, a
   * subquery output, a correlated reference). Always the real candidates, never "bound, so the
   * tenant": two references bound only through each other would otherwise vouch for each other
   * and the parameter that binds them would never be checked.
   */
  valueCandidates(term: Term): readonly Candidate[] {
    return term.kind === 'source' ? [term.candidate] : this.candidates(term);
  }

  /**
   * The tenant values a column is known equal to for every row of its item that matters: its own
   * binding (subquery output), plus everything its item's facts chain it to, as solved for the
   * column's own level (solver.ts). Empty: unbound.
   */
  candidates(term: ColumnTerm): readonly Candidate[] {
    const solver = term.item.scope.solve();
    return solver ? solver.candidates(term) : [];
  }

  /** The solved values of this level; undefined while it is being solved (a cycle through a subquery). */
  solve(): LevelSolver | undefined {
    if (this.solver) return this.solver;
    if (this.solving) return undefined;
    this.solving = true;
    try {
      const solver = new LevelSolver(this);
      if (this.sealed && solver.complete) this.solver = solver;
      return solver;
    } finally {
      this.solving = false;
    }
  }

  /** Records, for every guarded table referenced at this level, the check its tenant filter needs. */
  requireGuardedFilters(): void {
    for (const item of this.items) {
      const guarded = item.guarded;
      if (!guarded || item.init.kind !== 'table') continue;
      const candidates = this.candidates(this.columnTerm(item, guarded.tenantColumn));
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
