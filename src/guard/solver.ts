import type { ColumnTerm, FactGroup, Item, Term } from './item.js';
import type { Scope } from './scope.js';
import { candidateKey, type Candidate } from './verdict.js';

/**
 * What every column of one query level is known to equal, solved once for the whole level.
 *
 * Each FROM item has its own facts (scope.ts): the equalities of the conditions that hold for its
 * rows that matter (items of one segment share them). Within one set of facts, equal terms form
 * components (union-find). A column's
 * values are its own (a subquery output, an intrinsic column), the tenant values in its component
 * among its item's facts, and the values of every column in that component, each as known in its
 * own item's facts (transitively: `a LEFT JOIN b ON b.t = a.t WHERE a.t = $1` binds b through a).
 * Columns of enclosing levels are asked of their own level's solver. The least fixpoint is found
 * by propagating along component memberships, so the work is linear in the facts of the level
 * (each term's set of values only grows, and holds a handful of candidates).
 */

type Values = Map<string, Candidate>;

interface Component {
  /** The fact groups (shared by the items of one segment of the level) it is a component of. */
  readonly groups: readonly FactGroup[];
  readonly members: Term[];
  readonly values: Values;
}

export class LevelSolver {
  private readonly values = new Map<string, Values>();
  /** Column term key → the components (of any item's facts) it is a member of. */
  private readonly memberships = new Map<string, Component[]>();
  /** Column term key → the term's component in its own item's facts. */
  private readonly own = new Map<string, Component>();
  /** false when a value was cut short by a cycle (an enclosing level or a subquery still being analysed). */
  complete = true;

  constructor(private readonly scope: Scope) {
    const analysis = scope.analysis;
    const terms = new Map<string, Term>();
    const segments = new Map<readonly FactGroup[], Item>();
    for (const item of scope.items) if (!segments.has(item.groups)) segments.set(item.groups, item);
    for (const [groups, item] of segments) {
      const pairs = item.allPairs();
      if (pairs.length === 0) continue;
      analysis.spend(pairs.length);
      const parent = new Map<string, string>();
      const find = (key: string): string => {
        let root = key;
        while (parent.get(root) !== root) root = parent.get(root)!;
        for (let k = key; k !== root; ) {
          const next = parent.get(k)!;
          parent.set(k, root);
          k = next;
        }
        return root;
      };
      for (const [a, b] of pairs) {
        for (const t of [a, b]) {
          if (!parent.has(t.key)) {
            parent.set(t.key, t.key);
            terms.set(t.key, t);
          }
        }
        const ra = find(a.key);
        const rb = find(b.key);
        if (ra !== rb) parent.set(ra, rb);
      }
      const components = new Map<string, Component>();
      for (const key of parent.keys()) {
        const root = find(key);
        let component = components.get(root);
        if (!component) components.set(root, (component = { groups, members: [], values: new Map() }));
        const term = terms.get(key)!;
        component.members.push(term);
        if (term.kind === 'source') {
          component.values.set(term.key, term.candidate);
        } else {
          let list = this.memberships.get(term.key);
          if (!list) this.memberships.set(term.key, (list = []));
          list.push(component);
          if (term.item.groups === groups && term.item.scope === scope) this.own.set(term.key, component);
        }
      }
    }
    this.propagate(terms);
  }

  /** The values a column of this level is known to hold (empty: unbound). */
  candidates(term: ColumnTerm): readonly Candidate[] {
    return [...this.valuesOf(term).values()];
  }

  private valuesOf(term: ColumnTerm): Values {
    let values = this.values.get(term.key);
    if (values) return values;
    values = new Map();
    if (term.item.scope !== this.scope) {
      // A column of an enclosing level (a correlated reference): as that level knows it. While
      // that level is itself being solved (a cycle), nothing is known, and nothing is kept.
      const outer = term.item.scope.solve();
      if (!outer) {
        this.complete = false;
        return values;
      }
      for (const c of outer.candidates(term)) values.set(candidateKey(c), c);
    } else {
      for (const c of term.item.ownCandidates(term.column)) values.set(candidateKey(c), c);
      const component = this.own.get(term.key);
      if (component) for (const [k, c] of component.values) values.set(k, c);
    }
    this.values.set(term.key, values);
    return values;
  }

  private propagate(terms: ReadonlyMap<string, Term>): void {
    const queue: ColumnTerm[] = [];
    for (const term of terms.values()) if (term.kind === 'column') queue.push(term);
    while (queue.length > 0) {
      const term = queue.pop()!;
      const values = this.valuesOf(term);
      if (values.size === 0) continue;
      for (const component of this.memberships.get(term.key) ?? []) {
        this.scope.analysis.spend(1);
        if (!addAll(component.values, values)) continue;
        for (const member of component.members) {
          if (member.kind !== 'column' || member.item.groups !== component.groups || member.item.scope !== this.scope) continue;
          if (addAll(this.valuesOf(member), component.values)) queue.push(member);
        }
      }
    }
  }
}

/** Adds `from` to `into`; true when `into` grew. */
function addAll(into: Values, from: Values): boolean {
  let grew = false;
  for (const [k, c] of from) {
    if (!into.has(k)) {
      into.set(k, c);
      grew = true;
    }
  }
  return grew;
}
