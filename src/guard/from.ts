import type { Node } from 'libpg-query';
import { analyzeQuery, walkExpressions } from './analyze.js';
import { lookupBlind, lookupGuarded } from './catalog.js';
import { conjuncts, names } from './expressions.js';
import { FactGroup, UNKNOWN_OUTPUTS, type ColumnTerm, type OutputColumns } from './item.js';
import { statisticsRefusal } from './refusals.js';
import type { Scope } from './scope.js';

// FROM clauses: each item of a level, and the join conditions attached to the sides they filter.

interface FromResult {
  /** The column a `USING (col)` join above this node compares. */
  usingTerm(column: string): ColumnTerm | undefined;
}

const NO_USING = () => undefined;
const NONE: FromResult = { usingTerm: NO_USING };

/** What a LATERAL item (or a function in FROM) sees of its level: the items to its left. */
function leftOf(scope: Scope): Scope {
  // DML targets come first in their scope and are not visible to FROM items (PostgreSQL refuses it).
  let start = 0;
  while (start < scope.items.length && scope.items[start]!.init.target) start += 1;
  return scope.view(start, scope.items.length);
}

/**
 * Adds the FROM items of `node` to `scope`, attaching each join's ON to the sides it filters.
 * `open` collects the ON conditions of inner joins inside `node` that hold for more than the
 * node's own items: for every item combined with its rows through inner joins (or as the nullable
 * side of an outer join whose preserved side the node is on). The caller attaches them where they
 * stop holding.
 * Names are resolved where PostgreSQL looks for them: a plain subquery in FROM sees the enclosing
 * levels only (not its siblings), a LATERAL subquery and a function also the items to their left,
 * a JOIN's ON only the items of that join.
 */
export function buildFrom(node: Node, scope: Scope, open: FactGroup[]): FromResult {
  const analysis = scope.analysis;
  if ('RangeVar' in node) {
    const rv = node.RangeVar;
    const relname = rv.relname ?? '';
    const alias = rv.alias?.aliasname;
    const colnames = names(rv.alias?.colnames);
    const cte = rv.schemaname === undefined ? scope.lookupCte(relname) : undefined;
    if (!cte) refuseBlindView(scope, rv.schemaname, relname, rv.location, rv.inh === true);
    const item = cte
      ? scope.add({ kind: 'derived', name: alias ?? relname, location: rv.location ?? -1, colnames, outputs: () => cte.outputs })
      : scope.add({
          kind: 'table',
          name: alias ?? relname,
          location: rv.location ?? -1,
          relation: alias === undefined ? { schema: rv.schemaname, relname } : undefined,
          guarded: lookupGuarded(analysis.catalog, rv.schemaname, relname),
          colnames,
        });
    if (!cte) refuseStatistics(scope, rv.schemaname, relname, rv.location);
    return { usingTerm: (c) => scope.columnTerm(item, item.columnKey(c)) };
  }
  if ('RangeSubselect' in node) {
    const sub = node.RangeSubselect;
    const sees = sub.lateral ? leftOf(scope) : scope.view(0, 0);
    let state: 'new' | 'running' | 'done' = 'new';
    let result: OutputColumns = UNKNOWN_OUTPUTS;
    const outputs = () => {
      if (state === 'new') {
        state = 'running';
        result = analyzeQuery(sub.subquery, sees);
        state = 'done';
      }
      return result;
    };
    const item = scope.add({ kind: 'derived', name: sub.alias?.aliasname, location: -1, colnames: names(sub.alias?.colnames), outputs });
    return { usingTerm: (c) => scope.columnTerm(item, c) };
  }
  if ('JoinExpr' in node) {
    const join = node.JoinExpr;
    const type = join.jointype ?? 'JOIN_INNER';
    // Every row of an inner join satisfies its ON, and so does every row combined with it through
    // inner joins further up: the ON stays open. An outer join's ON holds for its nullable side
    // only, and the conditions open on that side stop there (its rows may be null-extended).
    const leftOpen = type === 'JOIN_INNER' || type === 'JOIN_LEFT' ? open : [];
    const rightOpen = type === 'JOIN_INNER' || type === 'JOIN_RIGHT' ? open : [];
    const first = scope.items.length;
    const left = join.larg ? buildFrom(join.larg, scope, leftOpen) : NONE;
    const middle = scope.items.length;
    const right = join.rarg ? buildFrom(join.rarg, scope, rightOpen) : NONE;
    const end = scope.items.length;
    const using = names(join.usingClause);
    const given: Array<readonly [ColumnTerm, ColumnTerm]> = [];
    for (const column of using) {
      const a = left.usingTerm(column);
      const b = right.usingTerm(column);
      if (a && b) given.push([a, b]);
    }
    if (using.length > 0 || join.isNatural) scope.mergedColumns = true;
    // ON sees this join's items only: a name of a sibling FROM item resolves to an enclosing level.
    const on = scope.view(first, scope.items.length);
    const group = new FactGroup(on, conjuncts(join.quals), given);
    if (type === 'JOIN_INNER') open.push(group);
    else if (type === 'JOIN_LEFT') scope.attach([...rightOpen, group], middle, end);
    else if (type === 'JOIN_RIGHT') scope.attach([...leftOpen, group], first, middle);
    else {
      scope.attach(leftOpen, first, middle);
      scope.attach(rightOpen, middle, end);
    }
    // Subqueries in ON are analysed once the level is complete (their correlated references chain
    // through facts, such as the WHERE, that are attached later).
    scope.defer(() => walkExpressions(join.quals, on));
    const joinAlias = join.alias?.aliasname ?? join.join_using_alias?.aliasname;
    // An aliased join hides the names inside it; its own columns are not tracked.
    if (join.alias?.aliasname) {
      const now = analysis.newId();
      for (let i = first; i < scope.items.length; i += 1) scope.items[i]!.hiddenSince ??= now;
    }
    if (joinAlias) scope.add({ kind: 'opaque', name: joinAlias, location: -1, joinAlias: true });
    const side = type === 'JOIN_RIGHT' ? right : left;
    return {
      usingTerm: (c) => (using.includes(c) && type !== 'JOIN_FULL' ? side.usingTerm(c) : undefined),
    };
  }
  if ('RangeTableSample' in node && node.RangeTableSample.relation) {
    const none = scope.view(0, 0);
    scope.defer(() => walkExpressions([node.RangeTableSample.args, node.RangeTableSample.repeatable], none));
    return buildFrom(node.RangeTableSample.relation, scope, open);
  }
  // Functions, XMLTABLE, JSON_TABLE: columns unknown, arguments (which may refer to the items to
  // their left, LATERAL or not) searched for subqueries.
  const body = Object.values(node)[0] as { alias?: { aliasname?: string } } | undefined;
  const left = leftOf(scope);
  scope.defer(() => walkExpressions(body, left));
  scope.add({ kind: 'opaque', name: body?.alias?.aliasname ?? functionAlias(node), location: -1 });
  return { usingTerm: NO_USING };
}

/**
 * A view over guarded tables without a tenant column of its own cannot be filtered: refused. So is
 * an inheritance parent without one when its children are read with it (`inherits`: not `ONLY`).
 */
export function refuseBlindView(scope: Scope, schema: string | undefined, relname: string, location: number | undefined, inherits: boolean): void {
  const view = lookupBlind(scope.analysis.catalog, schema, relname);
  if (!view || (view.kind === 'parent' && !inherits)) return;
  const name = `${view.schema}.${view.table}`;
  scope.analysis.refuse(
    view.kind === 'parent'
      ? `${name} is an inheritance parent of the guarded table ${view.reads} without a tenant column: reading it reads the child's rows of every tenant (name the child, or use ONLY ${name})`
      : `${name} is a view over the guarded table ${view.reads} without a tenant column to filter on`,
    location,
    name,
  );
}

/** Statistics views and tables hold sampled values of every tenant's rows (most common values, histograms). */
export function refuseStatistics(scope: Scope, schema: string | undefined, relname: string, location: number | undefined): void {
  const reason = statisticsRefusal(schema, relname);
  if (reason) scope.analysis.refuse(reason, location);
}

function functionAlias(node: Node): string | undefined {
  if (!('RangeFunction' in node)) return undefined;
  const first = node.RangeFunction.functions?.[0];
  const call = first && 'List' in first ? first.List.items?.[0] : undefined;
  const parts = call && 'FuncCall' in call ? names(call.FuncCall.funcname) : [];
  return parts[parts.length - 1];
}


/**
 * Builds a FROM list (and an UPDATE's target or DELETE's USING with it): its entries are
 * cross-joined, so the ON conditions left open inside them hold for every item of the level, as
 * does `where`.
 */
export function buildFromList(list: readonly Node[] | undefined, scope: Scope, where: Node | undefined): void {
  const open: FactGroup[] = [];
  for (const from of list ?? []) buildFrom(from, scope, open);
  open.push(new FactGroup(scope, conjuncts(where)));
  scope.attach(open);
}
