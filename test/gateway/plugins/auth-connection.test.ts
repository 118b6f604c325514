/**
 * Bearer tokens over real keep-alive connections: the gateway remembers the last verified
 * Authorization header of a connection, so these requests share one socket on purpose. Another
 * token on the same connection is judged on its own, a refused one stays refused, and a revoked
 * token stops working once the verification cache period has passed.
 */
import { Agent, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { createToken, revokeToken } from '../../../core/auth/tokens.js';
import { createTestDatabase } from '../../helpers/db.js';
import { startTestGateway } from '../../helpers/gateway.js';
import { uniqueTaskQueue } from '../../helpers/temporal.js';

const database = await createTestDatabase(t);
const gw = await startTestGateway(t, { database, temporalAddress: '127.0.0.1:1', taskQueue: uniqueTaskQueue(), dispatchOutbox: false });
await gw.app.listen({ host: '127.0.0.1', port: 0 });
const port = (gw.app.server.address() as AddressInfo).port;
const agent = new Agent({ keepAlive: true, maxSockets: 1 });
t.teardown(() => agent.destroy());

async function get(token: string): Promise<{ status: number; localPort: number }> {
  return await new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/scim/v2/Users?count=1', agent, headers: { authorization: `Bearer ${token}` } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, localPort: req.socket!.localPort! }));
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('one connection, several tokens: each judged on its own', async (t) => {
  const { token: writeOnly } = await createToken(database.db, 'write-only', ['scim:write']);
  const first = await get(gw.token);
  t.equal(first.status, 200, 'the reader reads');
  t.equal((await get(gw.token)).status, 200, 'again, from what the connection remembers');
  const other = await get(writeOnly);
  t.equal(other.status, 403, 'another token on the same connection is checked for its own scopes');
  t.equal((await get(`${gw.token.slice(0, -1)}x`)).status, 401, 'a token differing in one character is refused');
  t.equal((await get(gw.token.slice(0, -1))).status, 401, 'so is a shorter one');
  const last = await get(gw.token);
  t.equal(last.status, 200, 'and the reader still reads');
  t.equal(last.localPort, first.localPort, 'all of it over one connection');
});

t.test('a revoked token stops working on a connection that used it', async (t) => {
  const { token } = await createToken(database.db, 'soon-revoked', ['scim:read']);
  const before = await get(token);
  t.equal(before.status, 200);
  await revokeToken(database.db, 'soon-revoked');
  // The verification cache holds an answer for 5 s; the connection's memory never outlives it.
  await new Promise((r) => setTimeout(r, 5200));
  const after = await get(token);
  t.equal(after.localPort, before.localPort, 'same connection');
  t.equal(after.status, 401, 'revoked');
});
