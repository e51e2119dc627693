import { InvalidTenantIdError } from './errors.js';

/** The SQL type of tenant ids. */
export type TenantIdType = 'uuid' | 'text' | 'bigint';

export const TENANT_ID_TYPES: readonly TenantIdType[] = ['uuid', 'text', 'bigint'];

/** Longest text tenant id accepted (bytes of UTF-8 are not counted; characters are). */
export const MAX_TEXT_TENANT_ID_LENGTH = 128;

const CANONICAL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const NIL_UUID = '00000000-0000-0000-0000-000000000000';
const NIL_HEX = '0'.repeat(32);
const UUID_HEX = /^[0-9a-f]{32}$/;
const BIGINT_TEXT = /^-?[0-9]{1,19}$/;
const BIGINT_MIN = -(2n ** 63n);
const BIGINT_MAX = 2n ** 63n - 1n;
// Text ids: printable, no whitespace or separators that make ids ambiguous in hosts and paths.
const TEXT_ID = /^[a-z0-9][a-z0-9_.-]*$/;
/** A tenant slug: a DNS label (lower case), as the registry's CHECK constraint requires. */
export const SLUG = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * Parses a tenant id of the given type and returns its one canonical spelling, the form used for
 * lookups, cache keys, metrics and `set_config`. Throws InvalidTenantIdError on anything else.
 *
 * - uuid: braces, `urn:uuid:`, upper case and missing hyphens are accepted; the result is the
 *   lower-case hyphenated form. The nil UUID is refused (it is nobody's tenant).
 * - bigint: decimal digits within the int8 range, leading zeros dropped; numbers must be safe
 *   integers.
 * - text: lower-cased ASCII `[a-z0-9_.-]`, at most 128 characters, starting with a letter or digit.
 *   Surrounding whitespace is an error rather than trimmed away: `' acme'` and `'acme'` silently
 *   naming one tenant is how text ids collide.
 *
 * @example
 * canonicalTenantId('{6F9619FF-8B86-D011-B42D-00C04FC964FF}', 'uuid')
 * // => '6f9619ff-8b86-d011-b42d-00c04fc964ff'
 */
export function canonicalTenantId(raw: unknown, type: TenantIdType): string {
  switch (type) {
    case 'uuid':
      return canonicalUuid(raw);
    case 'bigint':
      return canonicalBigint(raw);
    case 'text':
      return canonicalText(raw);
    default:
      throw new InvalidTenantIdError(`unknown tenant id type ${String(type)}`);
  }
}

/** Like canonicalTenantId, but returns undefined instead of throwing. */
export function tryCanonicalTenantId(raw: unknown, type: TenantIdType): string | undefined {
  try {
    return canonicalTenantId(raw, type);
  } catch {
    return undefined;
  }
}

function canonicalUuid(raw: unknown): string {
  if (typeof raw !== 'string') throw invalid('uuid', 'a string');
  // Already canonical (what clients usually send, and every id the library hands out): as is.
  if (CANONICAL_UUID.test(raw) && raw !== NIL_UUID) return raw;
  if (raw.length > 45) throw invalid('uuid', 'at most 45 characters');
  let s = raw.toLowerCase();
  if (s.startsWith('urn:uuid:')) s = s.slice(9);
  if (s.startsWith('{') && s.endsWith('}')) s = s.slice(1, -1);
  const hex = s.length === 36 && s[8] === '-' && s[13] === '-' && s[18] === '-' && s[23] === '-'
    ? s.replaceAll('-', '')
    : s;
  if (!UUID_HEX.test(hex)) throw invalid('uuid', 'a UUID');
  if (hex === NIL_HEX) throw invalid('uuid', 'not the nil UUID');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function canonicalBigint(raw: unknown): string {
  let text: string;
  if (typeof raw === 'bigint') text = raw.toString();
  else if (typeof raw === 'number') {
    if (!Number.isSafeInteger(raw)) throw invalid('bigint', 'a safe integer');
    text = String(raw);
  } else if (typeof raw === 'string') text = raw;
  else throw invalid('bigint', 'an integer or a string of digits');
  if (!BIGINT_TEXT.test(text)) throw invalid('bigint', 'decimal digits');
  const value = BigInt(text);
  if (value < BIGINT_MIN || value > BIGINT_MAX) throw invalid('bigint', 'within the bigint range');
  return value.toString();
}

function canonicalText(raw: unknown): string {
  if (typeof raw !== 'string') throw invalid('text', 'a string');
  if (raw.length === 0) throw invalid('text', 'not empty');
  if (raw.length > MAX_TEXT_TENANT_ID_LENGTH) throw invalid('text', `at most ${MAX_TEXT_TENANT_ID_LENGTH} characters`);
  const s = raw.toLowerCase();
  if (!TEXT_ID.test(s)) throw invalid('text', 'letters, digits, "_", "." or "-", starting with a letter or digit');
  return s;
}

// The raw value is deliberately not in the message: it is attacker-controlled and may be huge.
function invalid(type: TenantIdType, expected: string): InvalidTenantIdError {
  return new InvalidTenantIdError(`invalid tenant id: expected ${expected} (tenant id type ${type})`);
}
