import type { Node, ParseResult } from 'libpg-query';
import type { Analysis } from './analysis.js';
import { analyzeQuery } from './analyze.js';
import { lookupGuarded, tableName } from './catalog.js';
import { setRefusal, statementRefusal, statisticsRefusal } from './refusals.js';
import { Scope } from './scope.js';

// parsenodes.h: DeclareCursorStmt.options bit for WITH HOLD.
const CURSOR_OPT_HOLD = 0x0020;

/** Analyses a parsed SQL text: one statement at most, of a kind allowed in tenant scope. */
export function analyzeParsed(parsed: ParseResult, analysis: Analysis): void {
  const statements = parsed.stmts ?? [];
  if (statements.length > 1) {
    analysis.refuse('several statements in one text: send them one by one (each is then checked, and none can end the tenant transaction behind the others)', statements[1]!.stmt_location ?? 0);
    return;
  }
  for (const raw of statements) {
    analysis.statementLocation = raw.stmt_location ?? 0;
    if (raw.stmt) analyzeTopLevel(raw.stmt, analysis);
  }
}

function analyzeTopLevel(node: Node, analysis: Analysis): void {
  const root = new Scope(analysis, undefined);
  if ('SelectStmt' in node) {
    if (node.SelectStmt.intoClause) {
      analysis.refuse('SELECT INTO creates a table and is not allowed in tenant scope', undefined);
      return;
    }
    analyzeQuery(node, root);
  } else if ('InsertStmt' in node || 'UpdateStmt' in node || 'DeleteStmt' in node || 'MergeStmt' in node) {
    analyzeQuery(node, root);
  } else if ('ExplainStmt' in node) {
    // EXPLAIN ANALYZE runs the statement; plain EXPLAIN shows row estimates of what it reads.
    if (node.ExplainStmt.query) analyzeTopLevel(node.ExplainStmt.query, analysis);
  } else if ('DeclareCursorStmt' in node) {
    // WITH HOLD keeps the cursor (and the rows it reads, as of this tenant's transaction) after
    // COMMIT: a later transaction of another tenant on the same pooled connection could FETCH it.
    if (((node.DeclareCursorStmt.options ?? 0) & CURSOR_OPT_HOLD) !== 0) {
      analysis.refuse('DECLARE ... WITH HOLD keeps the cursor open after the tenant transaction, for whoever uses the connection next; declare it without HOLD', undefined);
      return;
    }
    analyzeQuery(node.DeclareCursorStmt.query, root);
  } else if ('CopyStmt' in node) {
    const copy = node.CopyStmt;
    const rv = copy.relation;
    const guarded = rv && lookupGuarded(analysis.catalog, rv.schemaname, rv.relname ?? '');
    if (guarded) {
      analysis.refuse(`COPY ${copy.is_from ? 'FROM into' : 'of'} a guarded table moves rows the guard cannot check; use COPY (SELECT ... WHERE <tenant filter>) TO`, rv.location, tableName(guarded));
    }
    const statistics = rv && statisticsRefusal(rv.schemaname, rv.relname ?? '');
    if (statistics) analysis.refuse(statistics, rv.location);
    if (copy.query) analyzeQuery(copy.query, root);
  } else if ('LockStmt' in node) {
    for (const relation of node.LockStmt.relations ?? []) {
      if (!('RangeVar' in relation)) continue;
      const rv = relation.RangeVar;
      const guarded = lookupGuarded(analysis.catalog, rv.schemaname, rv.relname ?? '');
      if (guarded) analysis.refuse('LOCK of a guarded table blocks every tenant', rv.location, tableName(guarded));
    }
  } else if ('VariableSetStmt' in node) {
    const reason = setRefusal(node.VariableSetStmt, analysis.source.setting);
    if (reason) analysis.refuse(reason, node.VariableSetStmt.location);
  } else {
    const kind = Object.keys(node)[0] ?? 'unknown';
    const reason = statementRefusal(kind);
    if (reason) analysis.refuse(reason, (Object.values(node)[0] as { location?: number } | undefined)?.location);
  }
}
