import test from 'ava';
import { canonicalTenantId, InvalidTenantIdError, tryCanonicalTenantId } from '../src/index.js';

const uuid = '6f9619ff-8b86-d011-b42d-00c04fc964ff';

test('five spellings of one UUID canonicalise to one id', (t) => {
  const spellings = [
    uuid,
    uuid.toUpperCase(),
    `{${uuid}}`,
    uuid.replaceAll('-', ''),
    `urn:uuid:${uuid.toUpperCase()}`,
  ];
  t.deepEqual(new Set(spellings.map((s) => canonicalTenantId(s, 'uuid'))), new Set([uuid]));
});

for (const [label, bad] of [
  ['empty string', ''],
  ['whitespace', '   '],
  ['surrounding whitespace', ` ${uuid} `],
  ['SQL text', "x' OR '1'='1"],
  ['path traversal', '../etc/passwd'],
  ['NUL byte', `${uuid}\u0000`],
  ['non-ASCII', 'ünïcödé'],
  ['the nil UUID', '00000000-0000-0000-0000-000000000000'],
  ['hyphens in the wrong place', '6f9619ff8-b86-d011-b42d-00c04fc964ff'],
  ['10 KB', 'a'.repeat(10_000)],
  ['a number', 42],
  ['null', null],
] as const) {
  test(`a uuid tenant id that is ${label} is refused with InvalidTenantIdError`, (t) => {
    const error = t.throws(() => canonicalTenantId(bad, 'uuid'), { instanceOf: InvalidTenantIdError });
    t.is(error?.code, 'LBMT_INVALID_TENANT_ID');
    t.is(error?.status, 400);
    if (typeof bad === 'string' && bad.length > 0) t.false(error!.message.includes(bad), 'the raw value is not echoed');
  });
}

test('bigint ids accept numbers, bigints and digit strings, and drop leading zeros', (t) => {
  t.is(canonicalTenantId('0042', 'bigint'), '42');
  t.is(canonicalTenantId(42, 'bigint'), '42');
  t.is(canonicalTenantId(9223372036854775807n, 'bigint'), '9223372036854775807');
  t.is(canonicalTenantId('-1', 'bigint'), '-1');
});

test('bigint ids outside int8, fractional or unsafe numbers are refused', (t) => {
  for (const bad of ['9223372036854775808', '1.5', '1e3', 2 ** 60, 1.5, '', ' 1']) {
    t.throws(() => canonicalTenantId(bad, 'bigint'), { instanceOf: InvalidTenantIdError }, String(bad));
  }
});

test('text ids are lower-cased and restricted to a safe alphabet', (t) => {
  t.is(canonicalTenantId('Acme-Corp', 'text'), 'acme-corp');
  t.is(canonicalTenantId('acme_1.eu', 'text'), 'acme_1.eu');
  for (const bad of ['', ' acme', 'acme ', 'a/b', '-acme', 'a'.repeat(129), 'acmé', 'a\u0000b']) {
    t.throws(() => canonicalTenantId(bad, 'text'), { instanceOf: InvalidTenantIdError }, JSON.stringify(bad));
  }
});

test('tryCanonicalTenantId returns undefined instead of throwing', (t) => {
  t.is(tryCanonicalTenantId('nope', 'uuid'), undefined);
  t.is(tryCanonicalTenantId(uuid.toUpperCase(), 'uuid'), uuid);
});
