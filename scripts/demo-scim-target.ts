/**
 * `npm run demo:scim-target`: a local, in-memory SCIM 2.0 service (SCIMMY, the same server the scim
 * connector's tests use) to point the `scim` connector at when trying the gateway out. It prints its
 * base URL and token, and every minute what it holds. Development only: it needs the dev dependencies.
 */
import { startScimmyServer } from '../test/connectors/scim/scimmy-server.js';

const server = await startScimmyServer({ token: process.env.DEMO_SCIM_TOKEN ?? 'demo-target-token' });
process.stdout.write(`SCIM target: ${server.baseUrl}\ntoken:       ${server.token}\n`);
const timer = setInterval(() => {
  const users = [...server.users.values()].map((u) => `${String(u.userName)}${u.active === false ? ' (inactive)' : ''}`);
  const groups = [...server.groups.values()].map((g) => `${String(g.displayName)}: ${Array.isArray(g.members) ? g.members.length : 0} members`);
  process.stdout.write(`users: ${users.join(', ') || '-'}\ngroups: ${groups.join('; ') || '-'}\n`);
}, 60_000);
const stop = () => {
  clearInterval(timer);
  void server.close().then(() => process.exit(0));
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
