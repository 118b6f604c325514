/**
 * The connector of docs/writing-a-connector.md's walk-through, exactly as printed there, passes the
 * contract kit against a fake of its chat API.
 */
import { readFile } from 'node:fs/promises';
import t from 'tap';
import { createSecretResolver } from '@scim-gateway/connector-sdk';
import { runContractKit, seedThroughConnector } from '@scim-gateway/connector-sdk/kit';
import { instantiate } from '@scim-gateway/connector-sdk/registry';
import chat from './walkthrough/index.js';
import { startFakeChat } from './walkthrough/fake-chat.js';

const TOKEN = 'xoxb-test-token';

t.test('the guide prints this connector, and it stays under 150 lines', async (t) => {
  const guide = await readFile(new URL('../../../docs/writing-a-connector.md', import.meta.url), 'utf8');
  const source = await readFile(new URL('./walkthrough/index.ts', import.meta.url), 'utf8');
  const printed = /\*\*3\. The connector,\*\*[\s\S]*?```ts\n([\s\S]*?)```/.exec(guide)?.[1];
  t.equal(printed, source, 'section "3. The connector" of the walk-through is walkthrough/index.ts');
  const lines = source.trimEnd().split('\n').length;
  t.ok(lines < 150, `${lines} lines of connector code`);
  t.match(guide, new RegExp(`\\*\\*3\\. The connector,\\*\\* \`index\\.ts\`, ${lines} lines`), 'the guide gives the right line count');
});

t.test('the walk-through connector passes the contract kit', async (t) => {
  const fake = await startFakeChat({ token: TOKEN });
  t.teardown(() => fake.close());
  const connect = () => instantiate(chat, { apiUrl: fake.url, token: 'env:CHAT_TOKEN', pageSize: 2 }, { secret: createSecretResolver({ CHAT_TOKEN: TOKEN }) });
  await runContractKit({
    test: t.test.bind(t),
    definition: chat,
    connect,
    entitlement: { id: 'eng', target: { userGroup: 'engineering' } },
    ...seedThroughConnector(connect, 5),
  });
  t.doesNotThrow(() => instantiate(chat, { apiUrl: fake.url, token: 'env:CHAT_TOKEN' }), 'pageSize may be left out: its schema default fills it in');
});
