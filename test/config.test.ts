import test from 'ava';
import { defineTenancy, TenancyConfigError } from '../src/index.js';

test('defineTenancy fills in defaults and freezes the result deeply', (t) => {
  const config = defineTenancy({ tables: ['orders', { name: 'billing.invoices', tenantColumn: 'org_id' }] });
  t.is(config.setting, 'app.tenant_id');
  t.is(config.tenantIdType, 'uuid');
  t.is(config.policyForm, 'bare');
  t.deepEqual(config.roles, { owner: 'app_owner', app: 'app_user', admin: 'app_admin' });
  t.deepEqual(config.tables, [
    { schema: 'public', table: 'orders', tenantColumn: 'tenant_id' },
    { schema: 'billing', table: 'invoices', tenantColumn: 'org_id' },
  ]);
  t.true(Object.isFrozen(config) && Object.isFrozen(config.tables) && Object.isFrozen(config.tables[0]) && Object.isFrozen(config.roles));
  t.throws(() => {
    (config.tables as unknown as unknown[]).push({});
  });
});

const bad: Array<[string, unknown, RegExp]> = [
  ['an unknown option', { tabels: [] }, /unknown option `tabels`/],
  ['an unqualified setting', { setting: 'tenant_id' }, /`setting`/],
  ['a setting with SQL in it', { setting: "app.x'; drop table t; --" }, /`setting`/],
  ['an unknown id type', { tenantIdType: 'int' }, /`tenantIdType`/],
  ['a role with upper case', { roles: { app: 'App' } }, /`roles.app`/],
  ['the same role twice', { roles: { app: 'x', admin: 'x' } }, /three different roles/],
  ['an unknown role key', { roles: { reader: 'r' } }, /roles.reader/],
  ['a table name with three parts', { tables: ['a.b.c'] }, /`tables\[0\]`.name/],
  ['a quoted table name', { tables: ['"Orders"'] }, /`tables\[0\]`.name/],
  ['a table listed twice', { tables: ['orders', 'public.orders'] }, /listed twice/],
  ['a table entry without name', { tables: [{ tenantColumn: 'x' }] }, /`tables\[0\]` must be/],
  ['a bad tenant column', { tables: [{ name: 'orders', tenantColumn: 'tenant id' }] }, /`tables\[0\]`.tenantColumn/],
  ['tables that are not an array', { tables: 'orders' }, /`tables` must be an array/],
  ['an unknown policy form', { policyForm: 'subselect' }, /`policyForm`/],
];
for (const [label, input, message] of bad) {
  test(`defineTenancy refuses ${label}, naming the option`, (t) => {
    const error = t.throws(() => defineTenancy(input as never), { instanceOf: TenancyConfigError });
    t.regex(error!.message, message);
    t.is(error!.code, 'LBMT_CONFIG_INVALID');
  });
}
