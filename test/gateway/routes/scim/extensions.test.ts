import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { loadSchemaRegistry } from '../../../../core/scim/extensions.js';
import { ConfigError } from '../../../../core/config.js';
import { createTestDatabase } from '../../../helpers/db.js';
import { startTestGateway, userBody } from '../../../helpers/gateway.js';
import { uniqueTaskQueue } from '../../../helpers/temporal.js';

const GITHUB = 'urn:example:params:scim:schemas:extension:github:2.0:User';
const dir = mkdtempSync(join(tmpdir(), 'scimgw-ext-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const file = join(dir, 'extensions.json');
writeFileSync(
  file,
  JSON.stringify([
    {
      id: GITHUB,
      name: 'GitHubUser',
      resourceType: 'User',
      attributes: [{ name: 'githubUsername', description: 'GitHub login' }, { name: 'teams', multiValued: true }, { name: 'hiredAt', type: 'dateTime' }],
    },
  ]),
);

t.test('a custom extension from SCIM_EXTENSIONS_FILE is advertised, validated, stored and filterable', async (t) => {
  const database = await createTestDatabase(t);
  const gw = await startTestGateway(t, { database, temporalAddress: '127.0.0.1:1', taskQueue: uniqueTaskQueue(), dispatchOutbox: false, env: { SCIM_EXTENSIONS_FILE: file } });

  const schema = await gw.scim({ method: 'GET', url: `/scim/v2/Schemas/${GITHUB}`, token: null });
  t.equal(schema.statusCode, 200);
  t.same(schema.json().attributes.map((a: { name: string }) => a.name), ['githubUsername', 'teams', 'hiredAt']);
  const rt = (await gw.scim({ method: 'GET', url: '/scim/v2/ResourceTypes/User', token: null })).json();
  t.ok(rt.schemaExtensions.some((e: { schema: string }) => e.schema === GITHUB), 'User lists the extension');

  const created = await gw.scim({
    method: 'POST',
    url: '/scim/v2/Users',
    payload: userBody('octo@example.com', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User', GITHUB], [GITHUB]: { githubUsername: 'OctoCat', teams: ['eng'], hiredAt: '2024-02-01T09:00:00Z' } }),
  });
  t.equal(created.statusCode, 201, created.body);
  t.equal(created.json()[GITHUB].githubUsername, 'OctoCat');

  const found = await gw.scim({ method: 'GET', url: `/scim/v2/Users?filter=${encodeURIComponent(`${GITHUB}:githubUsername eq "octocat"`)}` });
  t.equal(found.json().totalResults, 1, 'filter on the custom attribute, case-insensitively');
  const bad = await gw.scim({
    method: 'POST',
    url: '/scim/v2/Users',
    payload: userBody('bad@example.com', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User', GITHUB], [GITHUB]: { hiredAt: 'yesterday' } }),
  });
  t.equal(bad.statusCode, 400);
  t.equal(bad.json().scimType, 'invalidValue');
});

t.test('a malformed extensions file is a configuration error naming the variable', async (t) => {
  const broken = join(dir, 'broken.json');
  writeFileSync(broken, '{"not": "an array"}');
  t.throws(() => loadSchemaRegistry(broken), ConfigError);
  t.throws(() => loadSchemaRegistry(join(dir, 'missing.json')), /SCIM_EXTENSIONS_FILE: cannot read/);
  writeFileSync(broken, JSON.stringify([{ id: 'not-a-urn', resourceType: 'User', attributes: [] }]));
  t.throws(() => loadSchemaRegistry(broken), /SCIM_EXTENSIONS_FILE: custom schema id "not-a-urn" is not a URN/);
});
