import t from 'tap';
import { relaxPatch, relaxResource } from '../../../core/scim/lenient.js';
import { ENTERPRISE_USER_SCHEMA as ENT, GROUP_SCHEMA, SchemaRegistry, USER_SCHEMA } from '../../../core/scim/schemas.js';

const registry = new SchemaRegistry();

t.test('relaxResource drops unknown attributes, sub-attributes, extension attributes and schema URNs', async (t) => {
  const body = {
    schemas: [USER_SCHEMA, ENT, 'urn:example:nope'],
    userName: 'u',
    favouriteColour: 'blue',
    NAME: { givenName: 'B', nickname: 'x' },
    emails: [{ value: 'a@example.com', label: 'x' }, 'not an object'],
    [ENT]: { department: 'Sales', costCentre: 1 },
    [`${ENT}:division`]: 'East',
    [`${ENT}:floor`]: 3,
    'urn:example:nope': { x: 1 },
  };
  const { value, ignored } = relaxResource(body, registry, 'User', false);
  t.same(value, {
    schemas: [USER_SCHEMA, ENT],
    userName: 'u',
    NAME: { givenName: 'B' },
    emails: [{ value: 'a@example.com' }, 'not an object'],
    [ENT]: { department: 'Sales' },
    [`${ENT}:division`]: 'East',
  }, 'known attributes are kept as sent, for the directory to validate');
  t.same(ignored, ['schemas: urn:example:nope', 'favouriteColour', 'name.nickname', 'emails.label', `${ENT}:costCentre`, `${ENT}:floor`, 'urn:example:nope']);
  t.same(body.NAME, { givenName: 'B', nickname: 'x' }, 'the input is not modified');
});

t.test('strict mode keeps everything but still reads member displayName as display', async (t) => {
  const body = { schemas: [GROUP_SCHEMA], displayName: 'g', colour: 1, members: [{ value: '1', displayName: 'One' }, { value: '2', displayName: 'x', display: 'Two' }] };
  const { value, ignored } = relaxResource(body, registry, 'Group', true);
  t.same(value, { schemas: [GROUP_SCHEMA], displayName: 'g', colour: 1, members: [{ value: '1', display: 'One' }, { value: '2', display: 'Two' }] }, 'display wins when both are given');
  t.same(ignored, []);
  t.same(relaxResource('nope', registry, 'Group', false), { value: 'nope', ignored: [] }, 'not an object: left for the directory to refuse');
});

t.test('relaxPatch drops operations on unknown paths and unknown keys of values', async (t) => {
  const ops = [
    { op: 'replace' as const, path: 'favoriteColor', value: 'x' },
    { op: 'replace' as const, path: 'name.nickname', value: 'x' },
    { op: 'add' as const, path: 'emails[type eq "work"].label', value: 'x' },
    { op: 'replace' as const, value: { title: 'T', shoeSize: 44, 'name.givenName': 'B', [ENT]: { department: 'D', desk: 1 } } },
    { op: 'add' as const, path: 'emails[type eq "work"]', value: { value: 'w@example.com', label: 'x' } },
    { op: 'remove' as const, path: 'emails[type eq' },
    { op: 'remove' as const, path: 'nickName' },
  ];
  const { value, ignored } = relaxPatch(ops, registry, 'User', false);
  t.same(value, [
    { op: 'replace', value: { title: 'T', 'name.givenName': 'B', [ENT]: { department: 'D' } } },
    { op: 'add', path: 'emails[type eq "work"]', value: { value: 'w@example.com' } },
    { op: 'remove', path: 'emails[type eq' },
    { op: 'remove', path: 'nickName' },
  ], 'malformed paths are kept so the usual invalidPath explains them');
  t.same(ignored, ['favoriteColor', 'name.nickname', 'emails[type eq "work"].label', 'shoeSize', `${ENT}:desk`, 'emails.label']);
  t.same(relaxPatch(ops, registry, 'User', true).value, ops, 'strict: unchanged');
  const members = relaxPatch([{ op: 'add', path: 'members', value: [{ value: '1', displayName: 'One' }] }], registry, 'Group', true);
  t.same(members.value, [{ op: 'add', path: 'members', value: [{ value: '1', display: 'One' }] }], 'member displayName in a PATCH');
});
