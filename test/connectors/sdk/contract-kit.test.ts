import { fileURLToPath } from 'node:url';
import t from 'tap';
import { runContractKit, seedThroughConnector, type TestFunction } from '@scim-gateway/connector-sdk/kit';
import { instantiate, loadConnector } from '@scim-gateway/connector-sdk/registry';
import { chatConnector, type PlantedBug } from './chat-connector.js';

const PLUGIN = fileURLToPath(new URL('../../fixtures/memory-connector.ts', import.meta.url));

t.test('a plugin loads by path and passes the contract kit', async (t) => {
  const def = await loadConnector(PLUGIN);
  t.equal(def.type, 'memory');
  const connect = () => instantiate(def, { namespace: 'contract-kit' });
  await runContractKit({
    test: t.test.bind(t),
    definition: def,
    connect,
    entitlement: { id: 'e1', target: { group: 'eng' } },
    ...seedThroughConnector(connect, 5),
    // The memory target keeps a disabled account's memberships, as some real targets do.
    disableKeepsGrants: true,
  });
});

/** Runs the kit with a test function that records which steps failed and why, instead of failing. */
async function kitOutcome(plant: PlantedBug | undefined, workspaceName: string) {
  const def = chatConnector(plant);
  const connect = () => instantiate(def, { workspace: workspaceName });
  const failed: Array<{ name: string; message: string }> = [];
  const passed: string[] = [];
  const test: TestFunction = async (name, fn) => {
    try {
      await fn();
      passed.push(name);
    } catch (err) {
      failed.push({ name, message: (err as Error).message });
    }
  };
  await runContractKit({ test, definition: def, connect, entitlement: { id: 'e-eng', target: { userGroup: 'engineering' } }, ...seedThroughConnector(connect, 5) });
  return { failed, passed };
}

t.test('the chat connector written from the guide passes the kit', async (t) => {
  const { failed, passed } = await kitOutcome(undefined, 'clean');
  t.same(failed, [], 'no step fails');
  t.ok(passed.length >= 7, `every step ran (${passed.join(', ')})`);
});

// Each bug was once planted in a third-party connector and let through by the kit.
const PLANTED: Record<PlantedBug, RegExp> = {
  'create-idempotent-in-memory': /createAccount is idempotent across instances/,
  'delete-keeps-memberships': /deleteAccount deprovisions/,
  'disable-keeps-memberships': /disableAccount deprovisions/,
  'list-accounts-drops-cursor': /listAccounts reads every page/,
  'list-grants-first-page-only': /listGrants reads every page/,
  'disable-does-nothing': /disableAccount deprovisions/,
};

for (const [plant, step] of Object.entries(PLANTED) as Array<[PlantedBug, RegExp]>) {
  t.test(`the kit catches a planted bug: ${plant}`, async (t) => {
    const { failed } = await kitOutcome(plant, `planted-${plant}`);
    t.ok(
      failed.some((f) => step.test(f.name)),
      `the step matching ${String(step)} fails; failed steps: ${JSON.stringify(failed)}`,
    );
  });
}

t.test('a missing seed hook fails the kit instead of checking one page', async (t) => {
  const def = chatConnector();
  const failed: string[] = [];
  await runContractKit({
    test: async (name, fn) => {
      await fn().catch((err: Error) => failed.push(`${name}: ${err.message}`));
    },
    definition: def,
    connect: () => instantiate(def, { workspace: 'no-seed' }),
    entitlement: { id: 'e', target: { userGroup: 'g' } },
  });
  t.match(failed.join('\n'), /seedAccounts hook/, 'the kit asks for seedAccounts');
  t.match(failed.join('\n'), /seedGrants hook/, 'and for seedGrants');
});

