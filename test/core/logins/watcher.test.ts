/**
 * The provisioning watcher behind the first-login stream: with PostgreSQL a change written through
 * any connection reaches subscribers by LISTEN/NOTIFY (no poll could deliver it in this test: the
 * poll interval is an hour); without LISTEN (the embedded database) subscribers are polled. Also the
 * HS256 tokens both sides of the first login share.
 */
import { randomUUID } from 'node:crypto';
import t from 'tap';
import { createTestDatabase, TEST_DATABASE_KIND } from '../../helpers/db.js';
import { ProvisioningWatcher } from '../../../core/logins/watcher.js';
import { sessionKey, signToken, verifyToken } from '../../../core/logins/tokens.js';

const database = await createTestDatabase(t);
const db = database.db;

async function newUser(): Promise<string> {
  const id = randomUUID();
  await db.query(`INSERT INTO users (id, user_name, resource) VALUES ($1, $2, '{}')`, [id, `${id}@example.com`]);
  return id;
}

if (TEST_DATABASE_KIND === 'embedded') {
  // The embedded database serves one process through one connection: the page polls it.
  t.test('on the embedded database a change reaches subscribers by polling', async (t) => {
    const watcher = new ProvisioningWatcher(db, { listen: false, pollMs: 20 });
    t.teardown(() => watcher.close());
    const ada = await newUser();
    let wake: () => void = () => {};
    const woken = new Promise<void>((resolve) => (wake = resolve));
    let after = false;
    await watcher.subscribe(ada, () => after && wake());
    await db.query(`INSERT INTO connectors (id, type) VALUES ('w', 'webhook') ON CONFLICT DO NOTHING`);
    await db.query(`INSERT INTO accounts (user_id, connector_id, state) VALUES ($1, 'w', 'active')`, [ada]);
    after = true;
    await woken;
    t.equal(watcher.live, false, 'polling, not listening');
  });
} else t.test('a change to a user\'s provisioning state wakes that user\'s subscribers', async (t) => {
  const listening = database.newPool(3);
  const watcher = new ProvisioningWatcher(listening, { listen: true, pollMs: 3_600_000, safetyPollMs: 3_600_000 });
  t.teardown(() => watcher.close());
  const [ada, bob] = [await newUser(), await newUser()];
  const woke: string[] = [];
  let wake: () => void = () => {};
  const woken = new Promise<void>((resolve) => (wake = resolve));
  await watcher.subscribe(ada, () => {
    woke.push('ada');
    wake();
  });
  await watcher.subscribe(bob, () => woke.push('bob'));
  t.equal(watcher.live, true, 'listening');
  await db.query(`INSERT INTO connectors (id, type) VALUES ('w', 'webhook') ON CONFLICT DO NOTHING`);
  await db.query(`INSERT INTO accounts (user_id, connector_id, state) VALUES ($1, 'w', 'active')`, [ada]);
  await woken;
  t.same(woke, ['ada'], "only ada's subscribers");
});

t.test('without LISTEN, subscribers are polled', async (t) => {
  const watcher = new ProvisioningWatcher(db, { listen: false, pollMs: 20 });
  t.teardown(() => watcher.close());
  let calls = 0;
  await new Promise<void>((resolve) => {
    void watcher.subscribe(randomUUID(), () => ++calls === 2 && resolve());
  });
  t.equal(watcher.live, false);
  t.ok(calls >= 2);
});

t.test('tokens: signed, expiring, and only in their canonical spelling', async (t) => {
  const key = sessionKey('secret-one');
  const now = Math.floor(Date.now() / 1000);
  const token = signToken(key, { typ: 'x', exp: now + 60 });
  t.match(verifyToken(key, token), { typ: 'x' });
  t.equal(verifyToken(sessionKey('secret-two'), token), undefined, 'another key');
  t.equal(verifyToken(key, signToken(key, { typ: 'x', exp: now - 1 })), undefined, 'expired');
  t.equal(verifyToken(key, signToken(key, { typ: 'x' })), undefined, 'no expiry');
  t.equal(verifyToken('secret-one', token), undefined, 'the action secret itself is not the session key');
  const last = token.at(-1)!;
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  // The last character of a 32-byte signature carries 4 bits; its neighbour in the alphabet may decode to the same bytes.
  const sibling = alphabet[alphabet.indexOf(last) ^ 1]!;
  t.equal(verifyToken(key, token.slice(0, -1) + sibling), undefined, 'a non-canonical spelling of the signature');
  const [h, , s] = token.split('.');
  t.equal(verifyToken(key, `${h}.${Buffer.from(JSON.stringify({ typ: 'x', exp: now + 9999 })).toString('base64url')}.${s}`), undefined, 'changed claims');
});
