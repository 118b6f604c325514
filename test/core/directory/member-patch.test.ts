import t from 'tap';
import { membersNamed } from '../../../core/directory/member-patch.js';
import type { PatchOperation } from '../../../core/scim/patch/index.js';

const A = '7d4c0a51-2f1e-4d7a-9c3b-0a1b2c3d4e5f';
const B = 'B1C2D3E4-F5A6-4B7C-8D9E-0F1A2B3C4D5E';
const named = (ops: PatchOperation[]) => {
  const ids = membersNamed(ops);
  return ids === undefined ? undefined : [...ids].sort();
};

t.test('operations that name their members', async (t) => {
  t.same(named([{ op: 'add', path: 'members', value: [{ value: A }, { value: B }] }]), [A, B.toLowerCase()].sort(), 'add with a value list (ids lower-cased)');
  t.same(named([{ op: 'remove', path: 'members', value: [{ value: A }] }]), [A], "Entra ID's remove with a value list");
  t.same(named([{ op: 'remove', path: `members[value eq "${A}"]` }]), [A], "Okta's remove with a value filter");
  t.same(named([{ op: 'replace', path: `members[value eq "${A}"].display`, value: 'x' }]), [A], 'a sub-attribute of one named member');
  t.same(named([{ op: 'add', path: 'urn:ietf:params:scim:schemas:core:2.0:Group:members', value: { value: A } }]), [A], 'URN-qualified path, one object');
  t.same(named([{ op: 'add', value: { members: [{ Value: A }] } }]), [A], 'path-less add, any casing of "value"');
  t.same(named([{ op: 'replace', path: 'displayName', value: 'x' }, { op: 'replace', value: { externalId: 'y' } }]), [], 'operations not reaching members name none');
});

t.test('operations that may reach members they do not name', async (t) => {
  const whole: Array<[string, PatchOperation]> = [
    ['replace members', { op: 'replace', path: 'members', value: [{ value: A }] }],
    ['remove every member', { op: 'remove', path: 'members' }],
    ['a sub-attribute of every member', { op: 'replace', path: 'members.display', value: 'x' }],
    ['a filter on another sub-attribute', { op: 'remove', path: 'members[display eq "x"]' }],
    ['a filter with or', { op: 'remove', path: `members[value eq "${A}" or value eq "${B}"]` }],
    ['path-less replace of members', { op: 'replace', value: { members: [{ value: A }] } }],
    ['path-less filtered key', { op: 'add', value: { [`members[value eq "${A}"].display`]: 'x' } }],
    ['path-less URN-qualified filtered key', { op: 'add', value: { [`urn:ietf:params:scim:schemas:core:2.0:Group:members[value eq "${A}"].display`]: 'x' } }],
    ['a member without a value', { op: 'add', path: 'members', value: [{ display: 'x' }] }],
    ['a value that is not a string', { op: 'add', path: 'members', value: [{ value: 7 }] }],
    ['an unparsable path', { op: 'remove', path: 'members[value eq' }],
  ];
  for (const [label, op] of whole) t.equal(named([{ op: 'add', path: 'members', value: [{ value: A }] }, op]), undefined, label);
});
