/**
 * Socket Mode: with SLACK_APP_TOKEN the gateway connects to Slack (apps.connections.open with the
 * app-level token, then a WebSocket) and takes commands and interactions over it, acknowledging
 * each envelope with the answer the HTTP callback would give; no HTTP callback routes are served
 * without a signing secret.
 */
import t from 'tap';
import { createTestDatabase } from '../../helpers/db.js';
import { startTestGateway, userBody } from '../../helpers/gateway.js';
import { startFakeSlack, TEST_APP_TOKEN, TEST_BOT_TOKEN } from '../../helpers/slack.js';

const fake = await startFakeSlack(t);
const database = await createTestDatabase(t);
const gw = await startTestGateway(t, {
  database,
  temporalAddress: '127.0.0.1:1',
  taskQueue: 'unused',
  dispatchOutbox: false,
  scopes: ['scim:read', 'scim:write', 'admin'],
  env: { SLACK_BOT_TOKEN: TEST_BOT_TOKEN, SLACK_APP_TOKEN: TEST_APP_TOKEN, SLACK_API_URL: fake.url },
});
await gw.call('POST', '/scim/v2/Users', userBody('sam@example.com'), 201);
await gw.call('POST', '/scim/v2/Groups', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'], displayName: 'Wiki admins' }, 201);
await gw.call('PUT', '/api/access-policies/wiki', { displayName: 'Team wiki', durations: { defaultSeconds: 86400 }, fulfilment: { mode: 'manual', group: 'Wiki admins' }, justificationRequired: true, stages: [] }, 201);
fake.addUser({ id: 'USAM', email: 'sam@example.com' });

t.test('connected with the app-level token', async (t) => {
  t.same(fake.callsOf('apps.connections.open').map((c) => c.outcome), ['ok']);
  t.equal(fake.sockets.length, 1);
  const res = await gw.app.inject({ method: 'POST', url: '/slack/commands', payload: 'text=help', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  t.equal(res.statusCode, 404, 'no HTTP callbacks without a signing secret');
});

t.test('a command and a form over the socket', async (t) => {
  const ack = await fake.envelope('slash_commands', { command: '/access', text: 'wiki', user_id: 'USAM', channel_id: 'DUSAM', trigger_id: fake.trigger('USAM') });
  t.same(ack, {}, 'acknowledged at once');
  await gw.app.slackApp!.idle();
  const form = fake.views.at(-1);
  t.match(form?.view, { callback_id: 'access.request', blocks: [{ block_id: 'policy', element: { initial_option: { value: 'wiki' } } }] }, 'the form opens');
  const values = { policy: { value: { selected_option: { value: 'wiki' } } }, duration: { value: { value: null } }, justification: { value: { value: null } } };
  const refused = await fake.envelope('interactive', { type: 'view_submission', user: { id: 'USAM' }, view: { callback_id: 'access.request', private_metadata: '{}', state: { values } } });
  t.match(refused, { response_action: 'errors', errors: { justification: /needs a justification/ } }, "the form's errors come back in the acknowledgement");
  values.justification.value.value = 'docs' as never;
  t.same(await fake.envelope('interactive', { type: 'view_submission', user: { id: 'USAM' }, view: { callback_id: 'access.request', private_metadata: '{}', state: { values } } }), {});
  const { rows } = await database.db.query(`SELECT justification, created_by FROM access_requests`);
  t.same(rows, [{ justification: 'docs', created_by: 'slack:USAM' }], 'the request is recorded');
});
