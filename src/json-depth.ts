/**
 * Nesting depth of a JSON-like value (a scalar is 0), without recursion: input validation must not
 * itself overflow the stack on the values it exists to refuse. Each object is counted once, at the
 * first depth it is met, so the cost is linear and a value built in code that contains itself ends
 * too (JSON.stringify refuses it afterwards).
 */
export function jsonDepth(value: unknown): number {
  let deepest = 0;
  const seen = new Set<object>();
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [current, depth] = stack.pop()!;
    if (current === null || typeof current !== 'object' || seen.has(current)) continue;
    seen.add(current);
    if (depth + 1 > deepest) deepest = depth + 1;
    for (const inner of Object.values(current)) stack.push([inner, depth + 1]);
  }
  return deepest;
}
