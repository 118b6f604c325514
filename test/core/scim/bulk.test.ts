import t from 'tap';
import { bulkReferences, parseBulkRequest, runBulk, type BulkOperation } from '../../../core/scim/bulk.js';
import { BULK_REQUEST_SCHEMA, USER_SCHEMA } from '../../../core/scim/schemas.js';

/** `levels` arrays nested around `inner`, built without recursion. */
function nested(levels: number, inner: unknown): unknown {
  let v = inner;
  for (let i = 0; i < levels; i++) v = [v];
  return v;
}

t.test('bulkId references are found in the path, values and keys of the data', async (t) => {
  const op: BulkOperation = { method: 'PATCH', path: '/Groups/bulkId:g', data: { members: [{ value: 'bulkId:u1' }, { value: 'x bulkId:u2' }], 'bulkId:k': 1 } };
  t.same(bulkReferences(op).sort(), ['g', 'k', 'u1', 'u2']);
});

t.test('deeply nested data does not exhaust the stack when references are collected and replaced', async (t) => {
  const deep = nested(200_000, 'bulkId:a');
  const req = parseBulkRequest(
    {
      schemas: [BULK_REQUEST_SCHEMA],
      Operations: [
        { method: 'POST', bulkId: 'a', path: '/Users', data: { schemas: [USER_SCHEMA], userName: 'a' } },
        { method: 'POST', bulkId: 'b', path: '/Users', data: { schemas: [USER_SCHEMA], userName: 'b', title: deep } },
      ],
    },
    10,
  );
  t.same(bulkReferences(req.operations[1]!), ['a']);
  const seen: unknown[] = [];
  const response = await runBulk(
    req,
    async (op) => {
      seen.push(op.data);
      return { status: 201, id: `id-${op.bulkId!}` };
    },
    (err) => t.fail(`unexpected error: ${String(err)}`),
  );
  t.same((response.Operations as Array<{ status: string }>).map((o) => o.status), ['201', '201']);
  let v = (seen[1] as { title: unknown }).title;
  let depth = 0;
  while (Array.isArray(v)) {
    v = v[0];
    depth++;
  }
  t.equal(depth, 200_000, 'the nesting is kept');
  t.equal(v, 'id-a', 'the reference at the bottom is replaced');
});
