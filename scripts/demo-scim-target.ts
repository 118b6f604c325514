/**
 * `npm run demo:scim-target`: a local SCIM 2.0 service (SCIMMY, the same server the scim connector's
 * tests use) to point the `scim` connector at when trying the gateway out. Development only: it
 * needs the dev dependencies.
 *
 * It listens on a fixed port (DEMO_TARGET_PORT, default 8090) and keeps what it holds in
 * $DATA_DIR/demo-scim-target.json (DATA_DIR defaults to .data), so stopping and starting it again
 * (to watch the gateway retry while it is down) keeps both its URL and its users and groups.
 * It accepts the bearer token DEMO_TARGET_TOKEN (default `demo-target-token`): the same variable the
 * connector's `env:DEMO_TARGET_TOKEN` reference reads in the gateway's worker.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { startScimmyServer, type StoredResource } from '../test/connectors/scim/scimmy-server.js';

const port = Number(process.env.DEMO_TARGET_PORT ?? '8090');
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  process.stderr.write(`DEMO_TARGET_PORT must be a port number (1-65535), got "${process.env.DEMO_TARGET_PORT}"\n`);
  process.exit(78);
}
const dataFile = resolve(join(process.env.DATA_DIR ?? '.data', 'demo-scim-target.json'));

interface Saved {
  users: StoredResource[];
  groups: StoredResource[];
}

/** What a previous run saved; dates come back as Date objects, as SCIMMY stored them. */
function load(): Saved {
  if (!existsSync(dataFile)) return { users: [], groups: [] };
  const saved = JSON.parse(readFileSync(dataFile, 'utf8')) as Partial<Saved>;
  const revive = (r: StoredResource): StoredResource => {
    const meta = r.meta as { created?: string; lastModified?: string } | undefined;
    return meta ? { ...r, meta: { ...meta, created: new Date(meta.created ?? Date.now()), lastModified: new Date(meta.lastModified ?? Date.now()) } } : r;
  };
  return { users: (saved.users ?? []).map(revive), groups: (saved.groups ?? []).map(revive) };
}

const initial = load();
// A change is written to a temporary file and renamed over the old one, so a crash mid-write never
// leaves a half-written file behind.
const save = () => {
  mkdirSync(dirname(dataFile), { recursive: true });
  const saved: Saved = { users: [...server.users.values()], groups: [...server.groups.values()] };
  writeFileSync(`${dataFile}.tmp`, `${JSON.stringify(saved, null, 2)}\n`);
  renameSync(`${dataFile}.tmp`, dataFile);
};

const server = await startScimmyServer({ token: process.env.DEMO_TARGET_TOKEN ?? 'demo-target-token', port, initial, onChange: save }).catch((err: unknown) => {
  const code = (err as { code?: string }).code;
  process.stderr.write(code === 'EADDRINUSE' ? `port ${port} is in use: set DEMO_TARGET_PORT to another one\n` : `cannot start: ${String(err)}\n`);
  process.exit(1);
});

const summary = () => {
  const users = [...server.users.values()].map((u) => `${String(u.userName)}${u.active === false ? ' (inactive)' : ''}`);
  const groups = [...server.groups.values()].map((g) => `${String(g.displayName)}: ${Array.isArray(g.members) ? g.members.length : 0} members`);
  return `users: ${users.join(', ') || '-'}\ngroups: ${groups.join('; ') || '-'}\n`;
};
process.stdout.write(`SCIM target: ${server.baseUrl}\ntoken:       ${server.token}\ndata:        ${dataFile}\n${summary()}`);
const timer = setInterval(() => process.stdout.write(summary()), 60_000);
const stop = () => {
  clearInterval(timer);
  void server.close().then(() => process.exit(0));
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
