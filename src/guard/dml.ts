import type { DeleteStmt, InsertStmt, MergeStmt, Node, RangeVar, UpdateStmt } from 'libpg-query';
import { analyzeQuery, finishScope, walkExpressions, withScope } from './analyze.js';
import { buildFrom, buildFromList, refuseBlindView } from './from.js';
import { FactGroup, UNKNOWN_OUTPUTS, type Item, type OutputColumns } from './item.js';
import { targetOutputs } from './outputs.js';
import { lookupGuarded, tableName, type GuardedTable } from './catalog.js';
import { conjuncts, knownWidth } from './expressions.js';
import { writeTargetRefusal } from './refusals.js';
import { Scope } from './scope.js';
import { ALWAYS, type Candidate } from './verdict.js';

/**
 * INSERT, UPDATE, DELETE and MERGE: the target is one more reference that its WHERE (or MERGE's
 * join condition) must bind; rows written must carry the current tenant; UPDATE may not move a
 * row to another tenant.
 */

function targetItem(scope: Scope, rv: RangeVar | undefined, intrinsic?: ReadonlyMap<string, readonly Candidate[]>): Item {
  const relname = rv?.relname ?? '';
  const alias = rv?.alias?.aliasname;
  const refusal = writeTargetRefusal(rv?.schemaname, relname);
  if (refusal) scope.analysis.refuse(refusal, rv?.location);
  return scope.add({
    kind: 'table',
    name: alias ?? relname,
    location: rv?.location ?? -1,
    relation: alias === undefined ? { schema: rv?.schemaname, relname } : undefined,
    guarded: lookupGuarded(scope.analysis.catalog, rv?.schemaname, relname),
    intrinsic,
    target: true,
  });
}

const tenantBound = (guarded: GuardedTable) => new Map([[guarded.tenantColumn, [ALWAYS]]]);

function returning(list: readonly Node[] | undefined, scope: Scope): OutputColumns {
  if (!list) return UNKNOWN_OUTPUTS;
  walkExpressions(list, scope);
  return targetOutputs(list, scope);
}

export function analyzeInsert(stmt: InsertStmt, parent: Scope): OutputColumns {
  const outer = withScope(stmt.withClause, parent);
  const analysis = outer.analysis;
  const guarded = lookupGuarded(analysis.catalog, stmt.relation?.schemaname, stmt.relation?.relname ?? '');
  const location = stmt.relation?.location;
  refuseBlindView(outer, stmt.relation?.schemaname, stmt.relation?.relname ?? '', location, false);
  const cols = stmt.cols ? stmt.cols.map((c) => ('ResTarget' in c ? c.ResTarget.name ?? '' : '')) : undefined;
  let index = -1;
  if (guarded) {
    const label = tableName(guarded);
    index = cols ? cols.indexOf(guarded.tenantColumn) : (guarded.position ?? 0) - 1;
    if (cols && index < 0) analysis.refuse(`INSERT into ${label} does not set its tenant column ${guarded.tenantColumn}`, location, label);
    else if (index < 0) analysis.refuse(`INSERT into ${label} without a column list: name the columns so the tenant column can be checked`, location, label);
    else if (!stmt.selectStmt) analysis.refuse(`INSERT ... DEFAULT VALUES into ${label} does not set its tenant column`, location, label);
  }
  const select = stmt.selectStmt && 'SelectStmt' in stmt.selectStmt ? stmt.selectStmt.SelectStmt : undefined;
  if (select?.valuesLists && !select.withClause) {
    const scope = new Scope(analysis, outer);
    scope.seal();
    walkExpressions(select.valuesLists, scope);
    for (const row of select.valuesLists) {
      if (!guarded || index < 0 || !('List' in row)) continue;
      const items = row.List.items ?? [];
      const value = knownWidth(items) ? items[index] : undefined;
      requireTenantValue(scope, value, guarded, 'insert', location);
    }
  } else if (stmt.selectStmt) {
    const out = analyzeQuery(stmt.selectStmt, outer);
    if (guarded && index >= 0) {
      const label = tableName(guarded);
      const column = out.exact ? out.columns[index] : undefined;
      if (!column) {
        analysis.refuse(`INSERT INTO ${label} ... SELECT: cannot tell which selected value is the tenant column (list the selected columns)`, location, label);
      } else {
        analysis.require(column.candidates, label, location, 'insert', `INSERT INTO ${label} ... SELECT: the value selected for ${guarded.tenantColumn} is not known to be the current tenant`);
      }
    }
  }
  const conflict = stmt.onConflictClause;
  if (conflict) {
    const scope = new Scope(analysis, outer);
    const target = targetItem(scope, stmt.relation);
    scope.add({ kind: 'table', name: 'excluded', location: -1, intrinsic: guarded ? tenantBound(guarded) : undefined });
    scope.attach([new FactGroup(scope, conjuncts(conflict.whereClause))], target.position, target.position + 1);
    scope.seal();
    walkExpressions([conflict.infer, conflict.targetList, conflict.whereClause], scope);
    if (guarded && conflict.action === 'ONCONFLICT_UPDATE') {
      const label = tableName(guarded);
      const inferred = (conflict.infer?.indexElems ?? []).some((e) => 'IndexElem' in e && e.IndexElem.name === guarded.tenantColumn);
      if (!inferred) {
        const candidates = scope.candidates(scope.columnTerm(target, guarded.tenantColumn));
        analysis.require(
          candidates,
          label,
          conflict.location,
          'filter',
          `ON CONFLICT DO UPDATE on ${label} may update another tenant's row: name ${guarded.tenantColumn} in the conflict target, or filter ${target.init.name}.${guarded.tenantColumn} = <current tenant> in its WHERE`,
        );
      }
      checkTenantAssignment(conflict.targetList, scope, target);
    }
  }
  const returnScope = new Scope(analysis, outer);
  targetItem(returnScope, stmt.relation, guarded ? tenantBound(guarded) : undefined);
  returnScope.seal();
  return returning(stmt.returningClause?.exprs, returnScope);
}

export function analyzeUpdate(stmt: UpdateStmt, parent: Scope): OutputColumns {
  const scope = new Scope(parent.analysis, withScope(stmt.withClause, parent));
  refuseBlindView(scope, stmt.relation?.schemaname, stmt.relation?.relname ?? '', stmt.relation?.location, stmt.relation?.inh === true);
  const target = targetItem(scope, stmt.relation);
  buildFromList(stmt.fromClause, scope, stmt.whereClause);
  scope.seal();
  walkExpressions([stmt.targetList, stmt.whereClause], scope);
  finishScope(scope);
  checkTenantAssignment(stmt.targetList, scope, target);
  return returning(stmt.returningClause?.exprs, scope);
}

export function analyzeDelete(stmt: DeleteStmt, parent: Scope): OutputColumns {
  const scope = new Scope(parent.analysis, withScope(stmt.withClause, parent));
  refuseBlindView(scope, stmt.relation?.schemaname, stmt.relation?.relname ?? '', stmt.relation?.location, stmt.relation?.inh === true);
  targetItem(scope, stmt.relation);
  buildFromList(stmt.usingClause, scope, stmt.whereClause);
  scope.seal();
  walkExpressions(stmt.whereClause, scope);
  finishScope(scope);
  return returning(stmt.returningClause?.exprs, scope);
}

/**
 * MERGE is `target JOIN source ON cond`, outer on the target side when there are `WHEN NOT
 * MATCHED [BY TARGET]` clauses and on the source side with `WHEN NOT MATCHED BY SOURCE`. The join
 * condition must bind the target (matching itself must not see other tenants' rows), a BY SOURCE
 * clause's own condition must bind it again (unmatched target rows reach it), and the source is
 * bound by the join condition only when no source row can go unmatched.
 */
export function analyzeMerge(stmt: MergeStmt, parent: Scope): OutputColumns {
  const analysis = parent.analysis;
  const outer = withScope(stmt.withClause, parent);
  const scope = new Scope(analysis, outer);
  refuseBlindView(scope, stmt.relation?.schemaname, stmt.relation?.relname ?? '', stmt.relation?.location, stmt.relation?.inh === true);
  const target = targetItem(scope, stmt.relation);
  const sourceStart = scope.items.length;
  // Conditions open inside the source hold for the source only (its rows may go unmatched).
  const sourceOpen: FactGroup[] = [];
  if (stmt.sourceRelation) buildFrom(stmt.sourceRelation, scope, sourceOpen);
  scope.attach(sourceOpen, sourceStart);
  const clauses = (stmt.mergeWhenClauses ?? []).flatMap((c) => ('MergeWhenClause' in c ? [c.MergeWhenClause] : []));
  const join = new FactGroup(scope, conjuncts(stmt.joinCondition));
  scope.attach([join], target.position, target.position + 1);
  if (!clauses.some((c) => c.matchKind === 'MERGE_WHEN_NOT_MATCHED_BY_TARGET')) scope.attach([join], sourceStart);
  scope.seal();
  walkExpressions(stmt.joinCondition, scope);
  finishScope(scope);
  const guarded = target.guarded;
  for (const clause of clauses) {
    walkExpressions([clause.condition, clause.targetList, clause.values], scope);
    if (!guarded) continue;
    const label = tableName(guarded);
    if (clause.matchKind === 'MERGE_WHEN_NOT_MATCHED_BY_SOURCE') {
      const own = new Scope(analysis, outer);
      const unmatched = targetItem(own, stmt.relation);
      own.attach([new FactGroup(own, conjuncts(clause.condition))]);
      own.seal();
      const candidates = own.candidates(own.columnTerm(unmatched, guarded.tenantColumn));
      analysis.require(candidates, label, stmt.relation?.location, 'filter', `WHEN NOT MATCHED BY SOURCE reaches every tenant's unmatched rows of ${label}: its condition must say ${unmatched.init.name}.${guarded.tenantColumn} = <current tenant>`);
    }
    if (clause.commandType === 'CMD_UPDATE') checkTenantAssignment(clause.targetList, scope, target);
    if (clause.commandType === 'CMD_INSERT') {
      const cols = clause.targetList?.length ? clause.targetList.map((c) => ('ResTarget' in c ? c.ResTarget.name ?? '' : '')) : undefined;
      const index = cols ? cols.indexOf(guarded.tenantColumn) : (guarded.position ?? 0) - 1;
      if (index < 0 || !clause.values) {
        analysis.refuse(`MERGE ... INSERT into ${label} does not set its tenant column ${guarded.tenantColumn} (name the columns)`, stmt.relation?.location, label);
      } else {
        requireTenantValue(scope, knownWidth(clause.values) ? clause.values[index] : undefined, guarded, 'insert', stmt.relation?.location);
      }
    }
  }
  return returning(stmt.returningClause?.exprs, scope);
}

/** `SET <tenant column> = x` must set the current tenant (or leave the column as it is). */
function checkTenantAssignment(targets: readonly Node[] | undefined, scope: Scope, target: Item): void {
  const guarded = target.guarded;
  if (!guarded || !targets) return;
  for (const node of targets) {
    if (!('ResTarget' in node) || node.ResTarget.name !== guarded.tenantColumn) continue;
    let value = node.ResTarget.val;
    if (value && 'MultiAssignRef' in value) {
      const { source, colno } = value.MultiAssignRef;
      // A star in the row (`((s).*, $1)`) expands to columns the guard cannot count.
      const args = source && 'RowExpr' in source ? source.RowExpr.args ?? [] : undefined;
      value = args && knownWidth(args) ? args[(colno ?? 0) - 1] : undefined;
    }
    requireTenantValue(scope, value, guarded, 'update', node.ResTarget.location);
  }
}

function requireTenantValue(scope: Scope, value: Node | undefined, guarded: GuardedTable, what: 'insert' | 'update', location: number | undefined): void {
  const label = tableName(guarded);
  const term = value && !('SetToDefault' in value) ? scope.term(value) : undefined;
  const candidates = term ? scope.valueCandidates(term) : [];
  const at = value ? locationOf(value) ?? location : location;
  const reason =
    what === 'insert'
      ? `a row inserted into ${label} sets ${guarded.tenantColumn} to a value that is not the current tenant (a bind parameter, constant or current_setting('${scope.analysis.source.setting}') is)`
      : `UPDATE of ${label} sets ${guarded.tenantColumn} to a value that is not the current tenant (moving a row to another tenant)`;
  scope.analysis.require(candidates, label, at, what, reason);
}

function locationOf(node: Node): number | undefined {
  const body = Object.values(node)[0] as { location?: number } | undefined;
  return body?.location;
}

