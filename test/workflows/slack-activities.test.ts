/**
 * The Slack activity on its own, over a real database and the fake Slack Web API: each message is
 * posted once however often the activity runs, Slack's failures are classified (429 with its
 * Retry-After and 5xx transient; invalid_auth and channel_not_found permanent), and one approver's
 * permanent failure does not keep the others from their DMs.
 */
import t from 'tap';
import { randomUUID } from 'node:crypto';
import { TransientError, PermanentError } from '@scim-gateway/connector-sdk';
import { ApplicationFailure } from '@temporalio/common';
import { createTestDatabase } from '../helpers/db.js';
import { startFakeSlack, TEST_BOT_TOKEN, FakeSlack } from '../helpers/slack.js';
import { SlackNotices, slackActivities } from '../../workflows/activities/slack.js';
import { classifySlackError, slackClient } from '../../core/slack/client.js';
import { SlackIdentities } from '../../core/slack/identity.js';
import type { SlackConfig } from '../../core/config.js';

const database = await createTestDatabase(t);
const db = database.db;
const fake = await startFakeSlack(t);
const config: SlackConfig = { botToken: TEST_BOT_TOKEN, signingSecret: undefined, appToken: undefined, apiUrl: fake.url, identityTtlSeconds: 3600, taskChannels: { '*': 'CNOWHERE' } };

async function user(userName: string, extra: Record<string, unknown> = {}): Promise<string> {
  const id = randomUUID();
  await db.query(`INSERT INTO users (id, user_name, resource, active) VALUES ($1, $2, $3, true)`, [id, userName, JSON.stringify({ userName, emails: [{ value: userName, primary: true }], ...extra })]);
  return id;
}
const requester = await user('rita@example.com', { displayName: 'Rita Requester' });
const a1 = await user('ann@example.com');
const a2 = await user('abe@example.com');
const a3 = await user('noslack@example.com');
fake.addUser({ id: 'URITA', email: 'rita@example.com' });
fake.addUser({ id: 'UANN', email: 'ann@example.com' });
fake.addUser({ id: 'UABE', email: 'abe@example.com' });

const policyId = randomUUID();
const policy = {
  id: policyId,
  name: 'ops',
  entitlementId: null,
  entitlement: null,
  displayName: 'Ops console',
  description: null,
  aliases: [],
  owners: { userIds: [], groupId: null },
  eligibility: { filter: null, groupId: null },
  durations: { defaultSeconds: 3600, maxSeconds: null, permanentAllowed: false },
  justificationRequired: false,
  fulfilment: { mode: 'manual', groupId: null, instructions: null },
  stages: [{ name: 'ops leads', approvers: { userIds: [a1, a2, a3], groupId: null, managerLevels: null, owners: false }, rule: 'any', quorum: null, whenNobody: 'reject', fallbackGroupId: null, timeoutSeconds: null, onTimeout: 'expire', autoApprove: null }],
  requestTtlSeconds: null,
};
await db.query(
  `INSERT INTO access_policies (id, name, display_name, fulfilment, stages) VALUES ($1, 'ops', 'Ops console', 'manual', $2)`,
  [policyId, JSON.stringify(policy.stages)],
);
async function newRequest(): Promise<string> {
  const id = randomUUID();
  // One pending request per policy and requester: the previous one is done with.
  await db.query(`UPDATE access_requests SET status = 'cancelled' WHERE status = 'pending'`);
  await db.query(`INSERT INTO access_requests (id, policy_id, policy, requester_id, duration_s, created_by) VALUES ($1, $2, $3, $4, 3600, 'test')`, [id, policyId, JSON.stringify(policy), requester]);
  await db.query(`INSERT INTO access_request_stages (request_id, stage, approver_ids, resolution) VALUES ($1, 0, $2, 'test')`, [id, [a1, a2, a3]]);
  return id;
}

const notices = new SlackNotices({ db, config });
const awaiting = (requestId: string) => ({ requestId, type: 'request.awaiting-you', stage: 0, recipientIds: [a1, a2, a3], key: 'stage-0' });

t.test('each message once, however often the activity runs', async (t) => {
  const id = await newRequest();
  await notices.notify({ requestId: id, type: 'request.opened' });
  await notices.notify(awaiting(id));
  await notices.notify(awaiting(id));
  await notices.notify({ requestId: id, type: 'request.opened' });
  t.equal(fake.dmOf('URITA').length, 1, 'one confirmation');
  t.equal(fake.dmOf('UANN').length, 1, 'one DM for ann');
  t.equal(fake.dmOf('UABE').length, 1, 'one DM for abe');
  t.match(fake.dmOf('UANN')[0]!.text, 'Rita Requester asks for Ops console');
  const { rows } = await db.query('SELECT recipient_id FROM slack_messages WHERE request_id = $1 AND kind = $2', [id, 'approval']);
  t.equal(rows.length, 2, 'the approver without a Slack account is skipped');
});

t.test('a reminder goes under the approval message of each approver still undecided, once', async (t) => {
  const id = await newRequest();
  await notices.notify(awaiting(id));
  const reminder = { requestId: id, type: 'request.reminder', stage: 0, recipientIds: [a1, a3], key: 'stage-0-reminder-600', deadline: '2030-01-01T12:00:00.000Z' };
  await notices.notify(reminder);
  await notices.notify(reminder);
  const { rows } = await db.query<{ channel: string; ts: string; recipient_id: string }>('SELECT channel, ts, recipient_id FROM slack_messages WHERE request_id = $1 AND kind = $2', [id, 'approval']);
  const annApproval = rows.find((r) => r.recipient_id === a1)!;
  const replies = fake.messages.filter((m) => m.threadTs === annApproval.ts);
  t.equal(replies.length, 1, 'one reminder for ann, in the thread of her approval message, however often the activity runs');
  t.match(replies[0]!.text, 'still needs your decision');
  const abeApproval = rows.find((r) => r.recipient_id === a2)!;
  t.equal(fake.messages.filter((m) => m.threadTs === abeApproval.ts).length, 0, 'abe was not among the undecided: no reminder');
  const { rows: reminders } = await db.query('SELECT recipient_id FROM slack_messages WHERE request_id = $1 AND kind = $2', [id, 'reminder']);
  t.same(reminders.map((r) => r.recipient_id), [a1], 'the approver not on Slack gets none (the webhook notice reaches them)');
});

t.test('a failure half-way: the retry posts only what is missing', async (t) => {
  const id = await newRequest();
  const before = fake.callsOf('chat.postMessage').length;
  fake.rateLimit(1, ['chat.postMessage'], 7);
  // The first post is refused: the retry posts both.
  const err = await notices.notify(awaiting(id)).catch((e: unknown) => e);
  t.ok(err instanceof TransientError, 'a 429 is transient');
  t.equal((err as TransientError).retryAfterMs, 7000, 'with the delay Slack asked for');
  await notices.notify(awaiting(id));
  t.equal(fake.dmOf('UANN').filter((m) => JSON.stringify(m.blocks).includes(id)).length, 1);
  t.equal(fake.dmOf('UABE').filter((m) => JSON.stringify(m.blocks).includes(id)).length, 1);
  t.equal(fake.callsOf('chat.postMessage').length - before, 3, 'one refused post, then one post each');
  // Now abe's post fails after ann's went out: the retry posts abe's only.
  const id2 = await newRequest();
  fake.failNext('chat.postMessage', { status: 503 });
  t.ok((await notices.notify(awaiting(id2)).catch((e: unknown) => e)) instanceof TransientError, 'a 5xx is transient');
  await notices.notify(awaiting(id2));
  t.equal(fake.messages.filter((m) => JSON.stringify(m.blocks).includes(id2)).length, 2, 'each approver got one DM');
});

t.test('permanent failures: the others still get theirs, and the activity is not retried', async (t) => {
  const id = await newRequest();
  fake.failNext('chat.postMessage', { error: 'channel_not_found' });
  const err = await notices.notify(awaiting(id)).catch((e: unknown) => e);
  t.ok(err instanceof PermanentError, 'channel_not_found is permanent');
  t.equal(fake.messages.filter((m) => JSON.stringify(m.blocks).includes(id)).length, 1, 'the other approver got the DM');
  const activity = slackActivities({ db, config: { ...config, botToken: 'xoxb-wrong' } });
  const failure = await activity.notifySlack({ requestId: id, type: 'request.opened' }).catch((e: unknown) => e);
  t.ok(failure instanceof ApplicationFailure, 'the activity fails with an ApplicationFailure');
  t.equal((failure as ApplicationFailure).nonRetryable, true, 'invalid_auth is not retried');
  t.match((failure as ApplicationFailure).message, 'invalid_auth');
  const limited = slackActivities({ db, config });
  fake.rateLimit(1, ['chat.postMessage'], 3);
  const later = await limited.notifySlack({ requestId: await newRequest(), type: 'request.opened' }).catch((e: unknown) => e);
  t.equal((later as ApplicationFailure).nonRetryable, false, 'a 429 is retried');
  t.equal((later as ApplicationFailure).nextRetryDelay, 3000, 'after its Retry-After');
  t.equal(await slackActivities(undefined).notifySlack({ requestId: id, type: 'request.opened' }), false, 'without Slack configured nothing is sent, and the workflow is told');
});

t.test('the thread tells how the request ended', async (t) => {
  const say = async (status: string, reason: string | null, type: string) => {
    const id = await newRequest();
    await db.query('UPDATE access_requests SET status = $2, status_reason = $3 WHERE id = $1', [id, status, reason]);
    await notices.notify({ requestId: id, type });
    await notices.notify({ requestId: id, type });
    const parent = fake.dmOf('URITA').find((m) => !m.threadTs && JSON.stringify(m.blocks).includes(id))!;
    return fake.dmOf('URITA').filter((m) => m.threadTs === parent.ts).map((m) => m.text);
  };
  t.same(await say('failed', 'the target refused: group full', 'request.failed'), ['Your access to Ops console could not be given: the target refused: group full.'], 'failed, with the reason, once');
  t.same(await say('expired', 'ops leads was not decided in time', 'request.expired'), ['Your request for Ops console expired: ops leads was not decided in time.']);
  t.same(await say('cancelled', 'cancelled by the requester', 'request.cancelled'), ['Your request for Ops console was cancelled.']);
  t.same(await say('fulfilled', null, 'request.access-ended'), ['Your access to Ops console has ended.']);
});

t.test('classification of what the client throws', async (t) => {
  const other = await new FakeSlack().start();
  t.teardown(() => other.close());
  const client = slackClient({ botToken: TEST_BOT_TOKEN, apiUrl: other.url });
  const classify = async (fn: () => Promise<unknown>) => classifySlackError('x', await fn().then(() => undefined, (e: unknown) => e));
  other.failNext('auth.test', { status: 500 });
  t.ok((await classify(() => client.auth.test())) instanceof TransientError, '500');
  other.failNext('auth.test', { status: 400 });
  t.ok((await classify(() => client.auth.test())) instanceof PermanentError, '400');
  other.failNext('auth.test', { error: 'internal_error' });
  t.ok((await classify(() => client.auth.test())) instanceof TransientError, 'internal_error');
  t.ok((await classify(() => slackClient({ botToken: 'xoxb-nope', apiUrl: other.url }).auth.test())) instanceof PermanentError, 'invalid_auth');
  t.ok((await classify(() => slackClient({ botToken: TEST_BOT_TOKEN, apiUrl: 'http://127.0.0.1:1/api/' }).auth.test())) instanceof TransientError, 'unreachable');
  t.equal(other.callsOf('auth.test').at(-1)?.outcome, 'invalid_auth', 'the fake checks the token');
  const missing = await client.chat.postMessage({ channel: 'C1' } as never).then(() => undefined, (e: unknown) => e);
  t.match((missing as { data?: { error?: string } }).data?.error, 'invalid_arguments', 'and required arguments');
});

t.test('identities: confirmed email only, remembered until they expire', async (t) => {
  fake.addUser({ id: 'UUNCONF', email: 'ann@example.com', confirmed: false });
  const ids = new SlackIdentities(db, slackClient(config), 3600);
  t.match(await ids.resolve('UANN'), { userId: a1, userName: 'ann@example.com' });
  t.match(await ids.resolve('UUNCONF'), { unmapped: /not confirmed/ });
  t.match(await ids.resolve('UNOBODY'), { unmapped: /does not know this user/ });
  const calls = fake.callsOf('users.info').length;
  await ids.resolve('UANN');
  t.equal(fake.callsOf('users.info').length, calls, 'remembered');
  fake.addUser({ id: 'UABE2', email: 'abe@example.com' });
  const brief = new SlackIdentities(db, slackClient(config), 0);
  await brief.resolve('UABE2');
  await brief.resolve('UABE2');
  t.equal(fake.callsOf('users.info').length, calls + 2, 'with no lifetime Slack is asked every time');
  await db.query('UPDATE users SET active = false WHERE id = $1', [a1]);
  t.match(await ids.resolve('UANN'), { unmapped: /not active/ }, 'a deactivated directory user maps to nobody');
  await db.query('UPDATE users SET active = true WHERE id = $1', [a1]);
});
