/**
 * Access reviews in Slack, on the real Temporal dev server and PostgreSQL against the fake Slack
 * Web API: when a campaign opens, each reviewer on Slack gets one DM listing their items with Keep
 * and Revoke (Revoke asks for confirmation; access from a rule has no Revoke), linking to the
 * console for the rest. Clicks decide with the API's rules: a revoke takes the access out of the
 * target, a repeated click changes nothing, someone else's click and a reviewer's click on their
 * own access are refused.
 */
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { userBody } from '../../helpers/gateway.js';
import { eventually } from '../../helpers/temporal.js';
import { startTestStack } from '../../helpers/stack.js';
import { memoryTarget } from '../../fixtures/memory-connector.js';
import { dmChannel, interactionBody, signedHeaders, startFakeSlack, TEST_BOT_TOKEN, TEST_SIGNING_SECRET, type FakeMessage } from '../../helpers/slack.js';

const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';
const MEMORY_PLUGIN = fileURLToPath(new URL('../../fixtures/memory-connector.ts', import.meta.url));

const fake = await startFakeSlack(t);
const stack = await startTestStack(t, {
  idleMs: 1000,
  worker: false,
  env: { SLACK_BOT_TOKEN: TEST_BOT_TOKEN, SLACK_SIGNING_SECRET: TEST_SIGNING_SECRET, SLACK_API_URL: fake.url },
});
const { gw } = stack;
await stack.temporal.startWorker(stack.database.newPool(), { deps: { slack: gw.config.slack, publicUrl: 'https://gateway.example.com/' } });
const api = gw.call;
const ns = `slack-reviews-${stack.temporal.taskQueue}`;
const target = memoryTarget(ns);
await api('PUT', '/api/connectors/memory', { id: 'memory', type: MEMORY_PLUGIN, config: { namespace: ns } }, 200);
await api('POST', '/api/entitlements', { connectorId: 'memory', name: 'vault', target: { group: 'vault' } }, 201);

const id: Record<string, string> = {};
id.mia = (await api('POST', '/scim/v2/Users', userBody('mia@example.com'), 201)).id as string;
for (const n of ['ann', 'ben', 'cid']) {
  id[n] = (await api('POST', '/scim/v2/Users', userBody(`${n}@example.com`, { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User', ENTERPRISE], [ENTERPRISE]: { manager: { value: id.mia } } }), 201)).id as string;
}
id.zoe = (await api('POST', '/scim/v2/Users', userBody('zoe@example.com', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User', ENTERPRISE], [ENTERPRISE]: { manager: { value: id.ann } } }), 201)).id as string;
for (const n of ['ann', 'ben', 'zoe']) await api('POST', '/api/grants', { userId: id[n], entitlement: 'memory/vault' }, 201);
await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Vault readers', members: [{ value: id.cid }] }, 201);
await api('POST', '/api/rules', { name: 'vault-readers', group: 'Vault readers', entitlements: ['memory/vault'] }, 201);
await eventually(async () => target.groups.get('vault')?.size === 4, 60_000, 'four vault memberships in the target');
for (const [slackId, n] of [['UMIA', 'mia'], ['UANN', 'ann'], ['UBEN', 'ben']] as const) fake.addUser({ id: slackId, email: `${n}@example.com` });

type Button = { action_id: string; value: string; confirm?: unknown };
const buttons = (m: FakeMessage) => (m.blocks as Array<{ elements?: Button[] }>).flatMap((b) => b.elements ?? []).filter((e) => typeof e.action_id === 'string');
const itemOf = async (userName: string) => {
  const items: Array<{ id: string; userName: string; status: string; decision: string | null }> = await api('GET', `/api/access-reviews/${campaign.id}/items`);
  return items.find((i) => i.userName === userName)!;
};

async function click(slackUser: string, message: FakeMessage, actionId: string, value: string) {
  const body = interactionBody({
    type: 'block_actions',
    user: { id: slackUser },
    trigger_id: fake.trigger(slackUser),
    channel: { id: message.channel },
    container: { type: 'message', channel_id: message.channel, message_ts: message.ts },
    message: { ts: message.ts, blocks: message.blocks },
    actions: [{ action_id: actionId, value, type: 'button' }],
  });
  const res = await gw.app.inject({ method: 'POST', url: '/slack/interactivity', payload: body, headers: signedHeaders(body) });
  t.equal(res.statusCode, 200, `${slackUser}'s ${actionId} is acknowledged`);
  await gw.app.slackApp!.idle();
  return fake.ephemerals.filter((e) => e.user === slackUser).at(-1)?.text ?? '';
}

const campaign = await api('POST', '/api/access-reviews', { name: 'q4-vault', scope: { entitlements: ['memory/vault'] }, reviewers: { manager: 1 }, durationSeconds: 3600 }, 201);

t.test("each reviewer on Slack gets one DM with their items and the buttons the rules allow", async (t) => {
  const dm = await eventually(async () => fake.dmOf('UMIA').find((m) => /access review item/.test(m.text)), 60_000, "mia's review DM");
  t.match(dm.text, /^3 access review items in q4-vault need your decision by \d{4}-\d\d-\d\d \d\d:\d\d UTC$/, `the DM's text: ${dm.text}`);
  t.equal(dm.channel, dmChannel('UMIA'), 'in her DM');
  const flat = JSON.stringify(dm.blocks);
  t.match(flat, /ann@example\.com/, 'ann is listed');
  t.match(flat, /from rule vault-readers: change the rule to remove it/, "cid's access from the rule is flagged");
  t.match(flat, /https:\/\/gateway\.example\.com\/console\/reviews/, 'the console link uses PUBLIC_URL');
  const cid = await itemOf('cid@example.com');
  const ann = await itemOf('ann@example.com');
  t.same(buttons(dm).filter((b) => b.value === cid.id).map((b) => b.action_id), ['review.keep'], 'access from a rule: Keep only');
  const annButtons = buttons(dm).filter((b) => b.value === ann.id);
  t.same(annButtons.map((b) => b.action_id), ['review.keep', 'review.revoke'], 'granted access: Keep and Revoke');
  t.ok(annButtons[1]!.confirm, 'Revoke asks for confirmation first');
  const annDm = await eventually(async () => fake.dmOf('UANN').find((m) => /access review item/.test(m.text)), 60_000, "ann's review DM (zoe's manager)");
  t.match(annDm.text, /^1 access review item in q4-vault needs your decision/);
  t.equal(fake.dmOf('UBEN').filter((m) => /access review/.test(m.text)).length, 0, 'ben reviews nothing: no DM');
  // The worker may retry or run the notice again: still one DM each.
  await new Promise((r) => setTimeout(r, 500));
  t.equal(fake.dmOf('UMIA').filter((m) => /access review item/.test(m.text)).length, 1, 'one DM for mia');
});

t.test('clicks decide with the same rules as the API', async (t) => {
  const dm = fake.dmOf('UMIA').find((m) => /access review item/.test(m.text))!;
  const ann = await itemOf('ann@example.com');
  const ben = await itemOf('ben@example.com');
  const cid = await itemOf('cid@example.com');

  t.match(await click('UBEN', dm, 'review.keep', ann.id), /can't decide this item: .*not a reviewer/i, "someone else's click is refused");
  t.equal((await itemOf('ann@example.com')).status, 'pending', 'and changes nothing');

  t.match(await click('UMIA', dm, 'review.revoke', ben.id), /You revoked ben@example\.com's memory\/vault/, 'a revoke by the reviewer');
  await eventually(async () => !target.groups.get('vault')?.has([...target.accounts.entries()].find(([, a]) => a.userName === 'ben@example.com')?.[0] ?? ''), 60_000, 'ben out of the vault in the target');
  t.match(await click('UMIA', dm, 'review.revoke', ben.id), /You revoked/, 'the same click again answers the same');
  t.match(await click('UMIA', dm, 'review.keep', ben.id), /Nothing changed: .*revoke/i, 'a different decision on a decided item is refused');

  t.match(await click('UMIA', dm, 'review.revoke', cid.id), /Nothing changed: .*rule/i, 'a forged Revoke on access from a rule is refused');
  t.match(await click('UMIA', dm, 'review.keep', ann.id), /You kept ann@example\.com's memory\/vault/, 'a keep');
  t.equal((await itemOf('ann@example.com')).decision, 'keep');

  const annDm = fake.dmOf('UANN').find((m) => /access review item/.test(m.text))!;
  const zoe = await itemOf('zoe@example.com');
  t.match(await click('UANN', annDm, 'review.keep', ann.id), /can't decide this item/, "ann cannot decide on her own access");
  t.match(await click('UANN', annDm, 'review.revoke', zoe.id), /You revoked zoe@example\.com's/, "ann decides zoe's");
});
