/**
 * Text from the database (object names, policy expressions) shown on a terminal. A name may hold
 * escape sequences (`CREATE POLICY "\x1b]0;...\x07"`), which a terminal would obey: move the cursor,
 * rewrite earlier lines of a report, set the title. C0 and C1 controls, DEL and the bidirectional
 * overrides (which reorder what is shown, "Trojan Source") are written as `\u{..}` instead.
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu;

/** `text` with every control character written as `\u{hex}`. */
export function printable(text: string): string {
  return text.replace(UNSAFE, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
}

// What JSON.stringify leaves raw inside strings (it escapes C0; newlines outside strings are layout).
const UNSAFE_IN_JSON = /[\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu;

/** JSON.stringify, with the characters JSON leaves raw in strings (DEL, C1, bidi) escaped too. */
export function printableJson(value: unknown, space?: number): string {
  return JSON.stringify(value, null, space).replace(UNSAFE_IN_JSON, (c) => `\\u${c.codePointAt(0)!.toString(16).padStart(4, '0')}`);
}
