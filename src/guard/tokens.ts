/**
 * A cheap count of a statement's tokens, before it is parsed: parsing (libpg-query, WASM, then the
 * AST's JSON read back) cannot be interrupted and costs about 1–3 µs a token on a 2-core machine,
 * while a string literal or comment costs about as little as one. So the count is of what the parser
 * pays for: a word, a number, a parameter, a quoted string or identifier (one each, whatever their
 * length) and each other character that is not white space (operators, punctuation and the dots of
 * qualified names; over-counted where an operator is longer than one character). Comments count nothing. It is a cost estimate, not a
 * lexer the verdict depends on: a miscount can only refuse a statement, or let one through to the
 * real parser and the analysis budget.
 *
 * Stops counting past `limit` (so the scan, too, is bounded by it).
 */
export function countTokens(text: string, limit: number): number {
  let count = 0;
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 32 || (c >= 9 && c <= 13)) {
      i += 1;
      continue;
    }
    if (c === 45 && text.charCodeAt(i + 1) === 45) {
      // -- comment
      const end = text.indexOf('\n', i);
      i = end < 0 ? n : end + 1;
      continue;
    }
    if (c === 47 && text.charCodeAt(i + 1) === 42) {
      // /* comment */ (nesting is not followed: the count only grows)
      const end = text.indexOf('*/', i + 2);
      i = end < 0 ? n : end + 2;
      continue;
    }
    if (++count > limit) return count;
    if (c === 39 || c === 34) {
      // 'string' or "identifier"; a doubled quote stays inside. In an escape string (E'...', the E
      // just before the quote) a backslash also skips the character after it (\' does not end it).
      // Elsewhere a backslash is an ordinary character: standard_conforming_strings is on, and the
      // guard refuses changing it.
      const escapes = c === 39 && i > 0 && (text.charCodeAt(i - 1) | 32) === 101 && (i < 2 || !isWordChar(text.charCodeAt(i - 2)));
      i += 1;
      while (i < n) {
        const d = text.charCodeAt(i);
        if (d === 92 && escapes) i += 2;
        else if (d === c) {
          if (text.charCodeAt(i + 1) === c) i += 2;
          else {
            i += 1;
            break;
          }
        } else i += 1;
      }
    } else if (c === 36) {
      // $1, or a dollar quote $tag$ ... $tag$
      let j = i + 1;
      while (j < n && isWordChar(text.charCodeAt(j))) j += 1;
      if (text.charCodeAt(j) === 36 && !isDigit(text.charCodeAt(i + 1))) {
        const tag = text.slice(i, j + 1);
        const end = text.indexOf(tag, j + 1);
        i = end < 0 ? n : end + tag.length;
      } else i = j;
    } else if (isWordChar(c)) {
      i += 1;
      while (i < n && (isWordChar(text.charCodeAt(i)) || text.charCodeAt(i) === 36)) i += 1;
    } else i += 1;
  }
  return count;
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

function isWordChar(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || isDigit(c) || c === 95 || c >= 128;
}
