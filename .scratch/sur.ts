import { createQueryGuard } from '../src/guard/index.js';
const A = '6f9619ff-8b86-4011-b42d-00c04fc964ff';
const g = await createQueryGuard({ tables: [{ name: 'invoices' }] });
const sql = `SELECT * FROM invoices WHERE tenant_id = $1 AND note = '\uD800' OR true --'`;
console.log(JSON.stringify(g.inspect(sql, [A], A)));
console.log('isWellFormed' in String.prototype, (sql as any).isWellFormed?.());
