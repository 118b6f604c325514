/**
 * The Slack app end to end on the real Temporal dev server and PostgreSQL, against the fake Slack
 * Web API (test/helpers/slack.ts) through the real @slack/web-api client, with callbacks signed
 * like Slack's: a request in plain words becomes a prefilled form, the form's errors show in it,
 * the manager and then a security-team member approve in Slack (a non-approver's click, a double
 * click and a stale button changing nothing), the access is provisioned into a real SCIM service,
 * and the requester's thread says so; a rejection with its reason; a manual task claimed and done
 * from the fulfilment group's channel; and Slack answering 429 for a while without a notice lost
 * or sent twice.
 */
import t from 'tap';
import { NativeConnection } from '@temporalio/worker';
import { userBody } from '../../helpers/gateway.js';
import { eventually, workflowBundle } from '../../helpers/temporal.js';
import { startTestStack } from '../../helpers/stack.js';
import { startScimmyServer } from '../../connectors/scim/scimmy-server.js';
import { createWorker } from '../../../workflows/worker.js';
import { SlackNotices } from '../../../workflows/activities/slack.js';
import { commandBody, dmChannel, interactionBody, signedHeaders, startFakeSlack, TEST_BOT_TOKEN, TEST_SIGNING_SECRET, type FakeMessage } from '../../helpers/slack.js';

const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';

const fake = await startFakeSlack(t);
const { database, gw, temporal } = await startTestStack(t, {
  idleMs: 1000,
  worker: false,
  env: { SLACK_BOT_TOKEN: TEST_BOT_TOKEN, SLACK_SIGNING_SECRET: TEST_SIGNING_SECRET, SLACK_API_URL: fake.url, SLACK_TASK_CHANNELS: 'IT Support=CTASKS' },
});
fake.channels.add('CTASKS');
const conn = await NativeConnection.connect({ address: temporal.address });
const bundle = workflowBundle();
const worker = await createWorker({
  connection: conn,
  namespace: temporal.namespace,
  taskQueue: temporal.taskQueue,
  db: database.newPool(),
  slack: gw.config.slack,
  ...(bundle ? { workflowBundle: bundle } : {}),
});
const running = worker.run();
t.teardown(async () => {
  worker.shutdown();
  await running;
  await conn.close();
});

const target = await startScimmyServer({ token: 'slack-target-token' });
t.teardown(() => target.close());
process.env.SLACK_TARGET_TOKEN = 'slack-target-token';
const api = gw.call;
await api('PUT', '/api/connectors/target', { id: 'target', type: 'scim', config: { baseUrl: target.baseUrl, token: 'env:SLACK_TARGET_TOKEN' } }, 200);
await api('POST', '/api/entitlements', { connectorId: 'target', name: 'vpn', target: { group: 'VPN users', create: true } }, 201);
await api('POST', '/api/entitlements', { connectorId: 'target', name: 'github-eng', target: { group: 'GitHub Eng', create: true } }, 201);

const user = async (userName: string, extra: Record<string, unknown> = {}) => (await api('POST', '/scim/v2/Users', userBody(userName, extra), 201)).id as string;
const bob = await user('bob@example.com', { displayName: 'Bob Boss' });
await user('alice@example.com', {
  schemas: ['urn:ietf:params:scim:schemas:core:2.0:User', ENTERPRISE],
  displayName: 'Alice Example',
  title: 'Release engineer',
  [ENTERPRISE]: { manager: { value: bob } },
});
const carol = await user('carol@example.com', { displayName: 'Carol Sec' });
const dave = await user('dave@example.com', { displayName: 'Dave Sec' });
await user('eve@example.com');
const frank = await user('frank@example.com', { displayName: 'Frank Fixit' });
await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Security', members: [{ value: carol }, { value: dave }] }, 201);
await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'IT Support', members: [{ value: frank }] }, 201);

for (const [id, email] of Object.entries({ UALICE: 'alice@example.com', UBOB: 'bob@example.com', UCAROL: 'carol@example.com', UDAVE: 'dave@example.com', UEVE: 'eve@example.com', UFRANK: 'frank@example.com', USTRANGER: 'stranger@example.com' })) {
  fake.addUser({ id, email });
}
fake.addUser({ id: 'UUNCONFIRMED', email: 'eve@example.com', confirmed: false });

const twoStages = [
  { name: 'manager', approvers: { manager: 1 } },
  { name: 'security team', approvers: { group: 'Security' } },
];
await api('PUT', '/api/access-policies/vpn', { entitlement: 'target/vpn', displayName: 'VPN', aliases: ['vpn-profile'], durations: { defaultSeconds: 3600, maxSeconds: 7 * 86_400 }, justificationRequired: true, fulfilment: { mode: 'automatic' }, stages: twoStages }, 201);
await api('PUT', '/api/access-policies/github-eng', { entitlement: 'target/github-eng', displayName: 'GitHub engineering team', aliases: ['github eng team'], durations: { defaultSeconds: 3600, maxSeconds: 7 * 86_400 }, fulfilment: { mode: 'automatic' }, stages: twoStages }, 201);
await api('PUT', '/api/access-policies/laptop-admin', { displayName: 'Laptop admin rights', durations: { defaultSeconds: 86_400 }, fulfilment: { mode: 'manual', group: 'IT Support', instructions: 'Add the user to the local admins via the MDM.' }, stages: [] }, 201);

// ------------------------------------------------------------------ callbacks as Slack sends them

async function callback(path: string, body: string, contentType?: string) {
  const res = await gw.app.inject({ method: 'POST', url: path, payload: body, headers: signedHeaders(body, contentType ? { contentType } : {}) });
  return res;
}
const idle = () => gw.app.slackApp!.idle();

async function command(userId: string, text: string) {
  const res = await callback('/slack/commands', commandBody({ user_id: userId, text, trigger_id: fake.trigger(userId) }));
  t.equal(res.statusCode, 200, `/access ${text} is acknowledged`);
  await idle();
}

async function click(userId: string, message: FakeMessage, actionId: string) {
  const action = (message.blocks as Array<{ type: string; elements?: Array<{ action_id: string; value: string }> }>).flatMap((b) => b.elements ?? []).find((e) => e.action_id === actionId);
  if (!action) throw new Error(`no ${actionId} button in ${JSON.stringify(message.blocks)}`);
  const res = await callback(
    '/slack/interactivity',
    interactionBody({
      type: 'block_actions',
      user: { id: userId },
      trigger_id: fake.trigger(userId),
      channel: { id: message.channel },
      container: { type: 'message', channel_id: message.channel, message_ts: message.ts },
      message: { ts: message.ts, blocks: message.blocks },
      actions: [{ action_id: action.action_id, value: action.value, type: 'button' }],
    }),
  );
  t.equal(res.statusCode, 200, `${userId}'s click on ${actionId} is acknowledged`);
  t.equal(res.body, '', 'at once, with nothing to show');
  await idle();
}

/** Submits the last view opened for `userId` with `values` (block id → text or selected option). */
async function submit(userId: string, values: Record<string, string | null>) {
  const opened = fake.views.filter((v) => v.user === userId).at(-1)!;
  const state: Record<string, unknown> = {};
  for (const [block, v] of Object.entries(values)) state[block] = { value: block === 'policy' ? { type: 'static_select', selected_option: v ? { value: v } : null } : { type: 'plain_text_input', value: v } };
  const res = await callback(
    '/slack/interactivity',
    interactionBody({ type: 'view_submission', user: { id: userId }, view: { id: opened.id, callback_id: opened.view.callback_id, private_metadata: opened.view.private_metadata, state: { values: state } } }),
  );
  t.equal(res.statusCode, 200);
  await idle();
  return res.body ? res.json<{ response_action?: string; errors?: Record<string, string> }>() : undefined;
}

const blocksText = (m: FakeMessage) => JSON.stringify(m.blocks);
/** The approval DM of `userId` about a request (it is the only message about it in an approver's DM). */
const approvalDm = (userId: string, requestId: string) => fake.dmOf(userId).find((m) => !m.threadTs && blocksText(m).includes(requestId));
const thread = (requestId: string) => {
  const parent = fake.dmOf('UALICE').find((m) => !m.threadTs && blocksText(m).includes(requestId));
  return parent ? fake.dmOf('UALICE').filter((m) => m.threadTs === parent.ts).map((m) => m.text) : [];
};
const requestOf = async (policy: string) =>
  (await database.db.query<{ id: string; status: string }>(`SELECT id, status FROM access_requests WHERE policy->>'name' = $1 ORDER BY created_at DESC LIMIT 1`, [policy])).rows[0];
const lastEphemeral = (userId: string) => fake.ephemerals.filter((e) => e.user === userId).at(-1)?.text ?? '';

t.test('who is who: an unknown or unconfirmed Slack user gets an explanation and nothing happens', async (t) => {
  await command('USTRANGER', 'vpn');
  t.match(lastEphemeral('USTRANGER'), /can't match your Slack account.*no active directory user has the email stranger@example.com/);
  await command('UUNCONFIRMED', 'vpn');
  t.match(lastEphemeral('UUNCONFIRMED'), 'not confirmed');
  t.equal(fake.views.length, 0, 'no form opened');
  const infos = fake.callsOf('users.info').length;
  await command('USTRANGER', 'vpn');
  t.equal(fake.callsOf('users.info').length, infos, 'the answer is remembered (no second users.info)');
});

t.test('"give me access to vpn" → form → errors in the form → request → manager → security team → provisioned → the thread says so', async (t) => {
  await command('UALICE', 'give me access to vpn');
  const form = fake.views.at(-1)!;
  t.equal(form.user, 'UALICE');
  t.match(form.view, { callback_id: 'access.request', blocks: [{ block_id: 'policy', element: { initial_option: { value: 'vpn' } } }] }, 'the form opens with VPN chosen');

  t.match(await submit('UALICE', { policy: 'vpn', duration: '2 days', justification: null }), { response_action: 'errors', errors: { justification: /needs a justification/ } }, 'a missing justification is shown in the form');
  t.match(await submit('UALICE', { policy: 'vpn', duration: 'a fortnight-ish', justification: 'on call' }), { response_action: 'errors', errors: { duration: /Write a duration/ } }, 'an unreadable duration');
  t.match(await submit('UALICE', { policy: 'vpn', duration: '30 days', justification: 'on call' }), { response_action: 'errors', errors: { duration: 'VPN can be granted for at most 1 week.' } }, 'a duration over the maximum, in words');
  t.equal(await requestOf('vpn'), undefined, 'no request yet');
  t.equal(await submit('UALICE', { policy: 'vpn', duration: '2 days', justification: 'on call this week' }), undefined, 'a valid form closes');
  const id = (await requestOf('vpn'))!.id;
  const { rows } = await database.db.query('SELECT duration_s, justification, created_by FROM access_requests WHERE id = $1', [id]);
  t.same(rows[0], { duration_s: 172_800, justification: 'on call this week', created_by: 'slack:UALICE' }, 'the request is recorded as written');

  const ask = await eventually(async () => approvalDm('UBOB', id), 60_000, "the manager's DM");
  t.match(blocksText(ask), /Alice Example.*Release engineer.*manager: Bob Boss/, 'requester name, title and manager');
  t.match(blocksText(ask), /VPN.*2 days.*on call this week.*1 of 2 \(manager\)/, 'resource, duration, justification, stage x of y');
  await eventually(async () => thread(id).length >= 0 && fake.dmOf('UALICE').some((m) => blocksText(m).includes(id) && m.text.includes('is recorded')), 30_000, 'the confirmation in the requester’s DM');

  // Someone who is no approver clicks the manager's button: told why, nothing changes.
  await click('UEVE', ask, 'access.approve');
  t.match(lastEphemeral('UEVE'), /can't decide this request: not an approver of the current stage.*Nothing changed/);
  const refused = await database.db.query(`SELECT accepted FROM access_request_decisions WHERE request_id = $1`, [id]);
  t.same(refused.rows, [{ accepted: false }], 'the refused attempt is recorded, nothing accepted');

  await click('UBOB', ask, 'access.approve');
  t.match(lastEphemeral('UBOB'), 'You approved Alice Example');
  await click('UBOB', ask, 'access.approve');
  t.match(lastEphemeral('UBOB'), 'You approved', 'a double click answers the same');
  const accepted = await database.db.query(`SELECT approver_id FROM access_request_decisions WHERE request_id = $1 AND accepted`, [id]);
  t.same(accepted.rows, [{ approver_id: bob }], 'one decision');

  const carolAsk = await eventually(async () => approvalDm('UCAROL', id), 60_000, 'the security team’s DMs');
  const { rows: stages } = await database.db.query('SELECT stage, status FROM access_request_stages WHERE request_id = $1 ORDER BY stage', [id]);
  t.same(stages, [{ stage: 0, status: 'approved' }, { stage: 1, status: 'open' }], 'the approved stage is recorded as approved when the next one opens');
  // Dave's message as it was before anyone decided (its buttons are what a stale client still shows).
  const daveAsk = structuredClone(await eventually(async () => approvalDm('UDAVE', id), 30_000, 'dave’s DM'));
  t.match(blocksText(carolAsk), '2 of 2 (security team)');
  await eventually(async () => approvalDm('UBOB', id)!.edits > 0, 30_000, "the manager's message to be updated");
  t.match(blocksText(approvalDm('UBOB', id)!), /Approved by \*Bob Boss\* at \d{4}-\d\d-\d\d \d\d:\d\d UTC/, 'it shows who decided and when');
  t.notMatch(blocksText(approvalDm('UBOB', id)!), 'access.approve', 'and no longer has buttons');
  await eventually(async () => thread(id).some((l) => l.includes('Approved by Bob Boss at stage 1 of 2')), 30_000, 'the thread to say stage 1 is approved');

  // Slack answers 429 for a while: messages are retried after Retry-After, none lost, none twice.
  fake.rateLimit(4, ['chat.postMessage', 'chat.update']);
  await click('UCAROL', carolAsk, 'access.approve');
  await eventually(async () => (await requestOf('vpn'))!.status === 'fulfilled', 120_000, 'the access to be provisioned');
  const lines = await eventually(async () => {
    const l = thread(id);
    return l.some((x) => x.includes('is in place')) ? l : undefined;
  }, 60_000, 'the thread to say the access is in place');
  t.same(
    lines.map((l) => l.replace(/ until .*/, '')),
    ['Approved by Bob Boss at stage 1 of 2 (manager).', 'Approved by Carol Sec at stage 2 of 2 (security team).', 'Approved. Your access to VPN is being given.', 'Your access to VPN is in place'],
    'the thread tells each step once, in order',
  );
  t.ok(fake.calls.filter((c) => c.outcome === '429').length >= 4, 'Slack did answer 429');
  await eventually(async () => approvalDm('UDAVE', id)!.edits > 0 && approvalDm('UCAROL', id)!.edits > 0, 30_000, 'the security team’s messages to be updated');
  t.match(blocksText(approvalDm('UDAVE', id)!), 'Approved by *Carol Sec*', "the other approver's message shows who decided");
  t.equal(fake.messages.filter((m) => m.channel === dmChannel('UDAVE') && blocksText(m).includes(id)).length, 1, 'one DM per approver');
  t.equal(approvalDm('UDAVE', id)!.edits, 1, 'updated once');

  // A stale button: dave clicks Approve on the message he had before it was updated.
  await click('UDAVE', daveAsk, 'access.approve');
  t.match(lastEphemeral('UDAVE'), /already fulfilled \(approved by Carol Sec at .*\).*Nothing changed/);

  const remote = target.findUserByName('alice@example.com');
  t.ok((target.findGroupByName('VPN users')?.members as Array<{ value: string }> | undefined)?.some((m) => m.value === remote?.id), 'alice is in the VPN group in the target');
  const { rows: posted } = await database.db.query<{ kind: string; n: number }>('SELECT kind, count(*)::int AS n FROM slack_messages WHERE request_id = $1 GROUP BY kind ORDER BY kind', [id]);
  t.same(posted, [{ kind: 'approval', n: 3 }, { kind: 'thread', n: 1 }, { kind: 'thread-update', n: 4 }], 'every message recorded once');
});

t.test('a DM in plain words, a choice button, the form prefilled; rejected with a reason', async (t) => {
  const text = 'I need the github eng team for 2 days to debug the release';
  const event = JSON.stringify({ type: 'event_callback', event_id: 'Ev1', team_id: 'T1', event: { type: 'message', channel_type: 'im', channel: dmChannel('UALICE'), user: 'UALICE', text, ts: '1.1' } });
  t.equal((await callback('/slack/events', event, 'application/json')).statusCode, 200);
  await idle();
  const reply = fake.dmOf('UALICE').at(-1)!;
  t.match(reply.text, 'I understood: GitHub engineering team for 2 days');
  const retried = JSON.stringify({ ...JSON.parse(event), retry: 1 });
  t.equal((await callback('/slack/events', retried, 'application/json')).statusCode, 200, "Slack's retry of the same event");
  await idle();
  t.equal(fake.dmOf('UALICE').at(-1), reply, 'is not answered twice');

  await click('UALICE', reply, 'access.choose:github-eng');
  const form = fake.views.at(-1)!.view as { blocks: Array<{ block_id: string; element: Record<string, unknown> }> };
  t.match(form.blocks.find((b) => b.block_id === 'policy')!.element, { initial_option: { value: 'github-eng' } });
  t.equal(form.blocks.find((b) => b.block_id === 'duration')!.element.initial_value, '2 days');
  t.equal(form.blocks.find((b) => b.block_id === 'justification')!.element.initial_value, 'debug the release');
  t.equal(await submit('UALICE', { policy: 'github-eng', duration: '2 days', justification: 'debug the release' }), undefined);
  const id = (await requestOf('github-eng'))!.id;

  const ask = await eventually(async () => approvalDm('UBOB', id), 60_000, "the manager's DM");
  await command('UBOB', 'inbox');
  const inbox = fake.ephemerals.filter((e) => e.user === 'UBOB').at(-1)!;
  t.match(JSON.stringify(inbox.blocks), /1 request\(s\) wait for your decision.*GitHub engineering team.*access\.approve/, "the manager's inbox lists it with its buttons");
  await click('UEVE', ask, 'access.reject');
  t.match(lastEphemeral('UEVE'), /can't decide this request: not an approver/, "a non-approver's Reject opens no form");
  t.equal(fake.views.at(-1)!.user, 'UALICE', 'no form opened for them');
  await click('UBOB', ask, 'access.reject');
  const modal = fake.views.at(-1)!;
  t.match(modal.view, { callback_id: 'access.reject-reason' }, 'Reject asks for the reason');
  t.match(await submit('UBOB', { reason: '  ' }), { response_action: 'errors', errors: { reason: /why/ } }, 'an empty reason is refused in the modal');
  t.equal(await submit('UBOB', { reason: 'not during the freeze' }), undefined);
  await eventually(async () => (await requestOf('github-eng'))!.status === 'rejected', 30_000, 'the rejection');
  await eventually(async () => thread(id).some((l) => l === 'Rejected by Bob Boss at stage 1 of 2 (manager): not during the freeze'), 30_000, 'the thread to give the reason');
  await eventually(async () => approvalDm('UBOB', id)!.edits > 0, 30_000, 'the message to be updated');
  t.match(blocksText(approvalDm('UBOB', id)!), 'Rejected by *Bob Boss*');
  t.match(blocksText(approvalDm('UBOB', id)!), 'not during the freeze');
});

t.test('/access list and inbox', async (t) => {
  await command('UALICE', 'list');
  t.match(lastEphemeral('UALICE'), /Your access\*\n• VPN until .*UTC\n\*Your pending requests\*\n_none_/, lastEphemeral('UALICE'));
  await command('UBOB', 'inbox');
  t.match(lastEphemeral('UBOB'), 'Nothing is waiting for your decision');
  await command('UALICE', 'github plz');
  t.match(lastEphemeral('UALICE'), 'Which one do you mean?', 'an ambiguous request is a choice');
});

t.test('access about to end: the thread offers Extend, which opens the form for an extension', async (t) => {
  const id = (await requestOf('vpn'))!.id;
  // The notice the workflow sends before time-bound access ends, as the activity receives it.
  const notices = new SlackNotices({ db: database.db, config: gw.config.slack! });
  await notices.notify({ requestId: id, type: 'request.expiring', key: 'expiring' });
  await notices.notify({ requestId: id, type: 'request.expiring', key: 'expiring' });
  const parent = fake.dmOf('UALICE').find((m) => !m.threadTs && blocksText(m).includes(id))!;
  const offers = fake.dmOf('UALICE').filter((m) => m.threadTs === parent.ts && m.text.startsWith('Your access to VPN ends'));
  t.equal(offers.length, 1, 'said once');
  await click('UBOB', offers[0]!, 'access.extend');
  t.match(lastEphemeral('UBOB'), 'not your request', 'only the requester may extend');
  await click('UALICE', offers[0]!, 'access.extend');
  const form = fake.views.at(-1)!;
  t.match(form.view, { title: { text: 'Extend access' }, private_metadata: JSON.stringify({ extends: id }) });
  t.equal(await submit('UALICE', { policy: 'vpn', duration: '1 day', justification: 'release slipped' }), undefined);
  const { rows } = await database.db.query(`SELECT extends_id, duration_s FROM access_requests WHERE extends_id IS NOT NULL`);
  t.same(rows, [{ extends_id: id, duration_s: 86_400 }], 'an extension request is made');
});

t.test('a manual task in the fulfilment group’s channel: Claim, Done', async (t) => {
  await command('UALICE', 'laptop admin rights');
  t.equal(await submit('UALICE', { policy: 'laptop-admin', duration: '', justification: null }), undefined);
  const id = (await requestOf('laptop-admin'))!.id;
  const task = await eventually(async () => fake.messages.find((m) => m.channel === 'CTASKS' && m.text.includes('Laptop admin rights')), 60_000, 'the task in the channel');
  t.match(blocksText(task), /Give \*Alice Example\* access to \*Laptop admin rights\*.*local admins/);
  await click('UEVE', task, 'access.task-claim');
  t.match(lastEphemeral('UEVE'), 'not for you');
  await click('UFRANK', task, 'access.task-claim');
  t.match(blocksText(task), 'Claimed by *frank@example.com*');
  await click('UFRANK', task, 'access.task-done');
  t.match(blocksText(task), 'Done by *frank@example.com*');
  await eventually(async () => (await requestOf('laptop-admin'))!.status === 'fulfilled', 30_000, 'the request to be fulfilled');
  await eventually(async () => thread(id).some((l) => l.startsWith('Your access to Laptop admin rights is in place')), 30_000, 'the thread to say so');
});
