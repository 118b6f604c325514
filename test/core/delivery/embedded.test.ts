/**
 * Deliveries on the embedded database (PGlite behind one pooled connection, as `npm start` runs):
 * the same statements create, serve once under concurrency, and purge.
 */
import t from 'tap';
import { loadWorkerConfig } from '../../../core/config.js';
import { deliveryFactory, purgeDeliveries } from '../../../core/delivery/index.js';
import { createEmbeddedTestDatabase } from '../../helpers/db.js';
import { startTestGateway, userBody } from '../../helpers/gateway.js';
import { uniqueTaskQueue } from '../../helpers/temporal.js';
import { startNoticeReceiver } from './notice-receiver.js';

const SECRET = 'embedded-delivery-secret-0123456789';

t.test('create, download once, purge on PGlite', async (t) => {
  const database = await createEmbeddedTestDatabase(t);
  const shared = database.db;
  const gw = await startTestGateway(t, { database, temporalAddress: '127.0.0.1:1', taskQueue: uniqueTaskQueue(), dispatchOutbox: false });
  const receiver = await startNoticeReceiver(t, SECRET);

  await shared.query(`INSERT INTO connectors (id, type) VALUES ('vpn', 'openvpn')`);
  const user = await gw.call('POST', '/scim/v2/Users', userBody('pglite@example.com'), 201);
  const deliver = deliveryFactory(loadWorkerConfig({ PUBLIC_URL: 'http://localhost:8080', DELIVERY_WEBHOOK_URL: receiver.url, DELIVERY_WEBHOOK_SECRET: SECRET }), shared)!('vpn');

  const first = await deliver({ userId: user.id, filename: 'p.ovpn', contentType: 'application/x-openvpn-profile', content: 'one' });
  const second = await deliver({ userId: user.id, filename: 'p.ovpn', contentType: 'application/x-openvpn-profile', content: 'two' });
  t.equal(receiver.notices.length, 2, 'both notices sent');
  const get = (url: string) => gw.app.inject({ method: 'GET', url: url.replace('http://localhost:8080', '') });
  t.equal((await get(first.url)).statusCode, 410, 'superseded');
  const answers = await Promise.all(Array.from({ length: 5 }, () => get(second.url)));
  t.same(answers.map((a) => a.statusCode).sort(), [200, 410, 410, 410, 410], 'exactly one concurrent GET wins');
  t.equal(answers.find((a) => a.statusCode === 200)!.body, 'two');
  const { rows } = await shared.query<{ n: number }>('SELECT count(*)::int AS n FROM deliveries WHERE ciphertext IS NOT NULL');
  t.equal(rows[0]!.n, 0, 'no content left');
  await shared.query(`UPDATE deliveries SET expires_at = now() - interval '1 second'`);
  t.same(await purgeDeliveries(shared, { retentionMs: 0 }), { wiped: 0, deleted: 2 });
});
