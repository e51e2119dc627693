import type { Node } from 'libpg-query';
import type { Analysis } from './analysis.js';
import { sourceCandidate, stringOf } from './expressions.js';
import { Item, type ColumnTerm, type ItemInit, type OutputColumns, type Term } from './item.js';
import { candidateKey, type Candidate } from './verdict.js';

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

// Bound on the candidate search; the chains in real statements are a handful of columns long.
const MAX_VISITED = 128;

/** A query level: its FROM items, its CTE names, and a link to the enclosing level. */
export class Scope {
  readonly items: Item[] = [];
  readonly ctes = new Map<string, { outputs: OutputColumns }>();
  /** Joins with USING/NATURAL merge columns, so `*` positions are unknown. */
  mergedColumns = false;
  /** Every item and fact group is in place: resolutions can be kept. */
  sealed = false;
  private readonly pending: Array<() => void> = [];
  /** For a view: the items hidden (by an aliased join inside it) when the view was taken. */
  private hiddenItems: ReadonlySet<Item> | undefined;

  constructor(
    readonly analysis: Analysis,
    readonly parent: Scope | undefined,
  ) {}

  /** Runs `fn` once the scope is sealed (subqueries in ON clauses see the whole level). */
  defer(fn: () => void): void {
    if (this.sealed) fn();
    else this.pending.push(fn);
  }

  /** Marks the items and fact groups complete, then runs what waited for that. */
  seal(): void {
    if (this.sealed) return;
    this.sealed = true;
    for (const fn of this.pending.splice(0)) fn();
  }

  /**
   * What a part of this level sees of it, as PostgreSQL scopes names: the JOIN's own items for its
   * ON clause, the items to the left for a LATERAL item or a function in FROM, none for a plain
   * subquery in FROM. Enclosing levels stay visible. Items hidden by an aliased join at this moment
   * stay hidden in the view (the alias of the join being built does not hide its items from its ON).
   */
  view(items: readonly Item[]): Scope {
    const view = new Scope(this.analysis, this.parent);
    view.items.push(...items);
    view.hiddenItems = new Set(items.filter((item) => item.hidden));
    view.mergedColumns = this.mergedColumns;
    view.sealed = true;
    return view;
  }

  isHidden(item: Item): boolean {
    return this.hiddenItems ? this.hiddenItems.has(item) : item.hidden;
  }

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
      if (this.isHidden(item)) return false;
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
   * subquery output, a correlated reference). Always the real candidates, never "bound, so the
   * tenant": two references bound only through each other would otherwise vouch for each other
   * and the parameter that binds them would never be checked.
   */
  valueCandidates(term: Term, visited: Set<string> = new Set()): readonly Candidate[] {
    return term.kind === 'source' ? [term.candidate] : this.candidates(term, visited);
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
