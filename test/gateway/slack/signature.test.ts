/**
 * Slack's callbacks are believed only when signed: a bad signature, a stale timestamp and a replay
 * are refused with 401 before anything is parsed or done (no Slack call, nothing recorded).
 */
import t from 'tap';
import { Writable } from 'node:stream';
import { loggerOptions } from '../../../gateway/app.js';
import { createTestDatabase } from '../../helpers/db.js';
import { startTestGateway } from '../../helpers/gateway.js';
import { commandBody, interactionBody, signedHeaders, startFakeSlack, TEST_BOT_TOKEN, TEST_SIGNING_SECRET } from '../../helpers/slack.js';

const fake = await startFakeSlack(t);
fake.addUser({ id: 'U1', email: 'nobody@example.com' });
const database = await createTestDatabase(t);
const logged: string[] = [];
const stream = new Writable({
  write(chunk: Buffer, _enc, done) {
    logged.push(chunk.toString('utf8'));
    done();
  },
});
const gw = await startTestGateway(t, {
  database,
  logger: { ...(loggerOptions('debug') as object), stream },
  temporalAddress: '127.0.0.1:1',
  taskQueue: 'unused',
  dispatchOutbox: false,
  env: { SLACK_BOT_TOKEN: TEST_BOT_TOKEN, SLACK_SIGNING_SECRET: TEST_SIGNING_SECRET, SLACK_API_URL: fake.url },
});

const post = async (url: string, body: string, headers: Record<string, string>) => await gw.app.inject({ method: 'POST', url, payload: body, headers });
const seen = async () => (await database.db.query('SELECT count(*)::int AS n FROM slack_seen_requests')).rows[0].n as number;
const help = commandBody({ user_id: 'U1', text: 'help', trigger_id: fake.trigger('U1') });

t.test('a signed command is answered at once and handled', async (t) => {
  const res = await post('/slack/commands', help, signedHeaders(help));
  t.equal(res.statusCode, 200);
  await gw.app.slackApp!.idle();
  t.equal(fake.callsOf('chat.postEphemeral').length, 1, 'the help is sent to the user');
  t.match(fake.ephemerals[0]!.text, '/access');
});

t.test('refused with 401, nothing done', async (t) => {
  const calls = fake.calls.length;
  const before = await seen();
  const body = commandBody({ user_id: 'U1', text: 'help', trigger_id: fake.trigger('U1') });
  const now = Math.floor(Date.now() / 1000);
  const cases: Array<[string, Record<string, string>]> = [
    ['a wrong secret', signedHeaders(body, { secret: 'not-the-secret-at-all-0000000000' })],
    ['a tampered body', signedHeaders(`${body}&x=1`)],
    ['a stale timestamp', signedHeaders(body, { timestamp: now - 301 })],
    ['a timestamp from the future', signedHeaders(body, { timestamp: now + 301 })],
    ['no signature', { 'content-type': 'application/x-www-form-urlencoded', 'x-slack-request-timestamp': String(now) }],
    ['a malformed timestamp', { ...signedHeaders(body), 'x-slack-request-timestamp': 'yesterday' }],
  ];
  for (const [what, headers] of cases) {
    const res = await post('/slack/commands', body, headers);
    t.equal(res.statusCode, 401, what);
    t.match(res.json(), { statusCode: 401, error: 'Unauthorized', message: /not a verified Slack request/ }, `${what}: the API's error shape`);
  }
  await gw.app.slackApp!.idle();
  t.equal(fake.calls.length, calls, 'Slack was not called');
  t.equal(await seen(), before, 'nothing recorded');
});

t.test('a replay is refused and not handled again', async (t) => {
  const body = commandBody({ user_id: 'U1', text: 'help', trigger_id: fake.trigger('U1') });
  const headers = signedHeaders(body);
  t.equal((await post('/slack/commands', body, headers)).statusCode, 200);
  await gw.app.slackApp!.idle();
  const calls = fake.calls.length;
  const again = await post('/slack/commands', body, headers);
  t.equal(again.statusCode, 401);
  t.match(again.json().message, 'replay');
  t.equal(fake.calls.length, calls, 'the replayed command did nothing');
  const interaction = interactionBody({ type: 'block_actions', user: { id: 'U1' }, channel: { id: 'DU1' }, actions: [{ action_id: 'access.approve', value: 'x:0' }] });
  const iHeaders = signedHeaders(interaction);
  t.equal((await post('/slack/interactivity', interaction, iHeaders)).statusCode, 200);
  await gw.app.slackApp!.idle();
  const told = fake.ephemerals.length;
  t.match(fake.ephemerals.at(-1)?.text, "can't match your Slack account", 'the unmapped clicker is told why');
  t.equal((await post('/slack/interactivity', interaction, iHeaders)).statusCode, 401, 'an interaction replayed');
  await gw.app.slackApp!.idle();
  t.equal(fake.ephemerals.length, told, 'and not handled again');
});

t.test('events: the URL check is answered; a body that is not a callback is 400 once verified', async (t) => {
  const check = JSON.stringify({ type: 'url_verification', challenge: 'abc123', token: 'legacy' });
  const res = await post('/slack/events', check, signedHeaders(check, { contentType: 'application/json' }));
  t.equal(res.statusCode, 200);
  t.same(res.json(), { challenge: 'abc123' });
  const junk = 'payload=%7Bnot-json';
  const bad = await post('/slack/interactivity', junk, signedHeaders(junk));
  t.equal(bad.statusCode, 400);
  const unsigned = await post('/slack/events', check, { 'content-type': 'application/json' });
  t.equal(unsigned.statusCode, 401, 'an unsigned event');
});


t.test('secrets and signatures never reach the logs', async (t) => {
  const all = logged.join('');
  t.match(all, 'Slack callback refused', 'the refusals are logged');
  t.notMatch(all, TEST_SIGNING_SECRET);
  t.notMatch(all, TEST_BOT_TOKEN);
  t.notMatch(all, /v0=[0-9a-f]{64}/, 'no signature');
});
