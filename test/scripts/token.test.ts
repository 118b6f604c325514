import { execFile } from 'node:child_process';
import t from 'tap';
import { createTestDatabase } from '../helpers/db.js';
import { TokenVerifier } from '../../core/auth/tokens.js';

function token(env: Record<string, string>, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'scripts/token.ts', ...args], { env: { PATH: process.env.PATH ?? '', ...env } }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

t.test('create, list, rotate and revoke tokens from the command line', async (t) => {
  const database = await createTestDatabase(t);
  const env = { DATABASE_URL: database.url };
  const created = await token(env, 'create', 'okta', 'scim:read', 'scim:write');
  t.equal(created.code, 0, created.stderr);
  const secret = created.stdout.trim();
  t.match(secret, /^scimgw_[A-Za-z0-9_-]{43}$/);

  const stored = await database.db.query('SELECT token_hash FROM api_tokens WHERE name = $1', ['okta']);
  t.not(stored.rows[0].token_hash.toString('utf8'), secret, 'only a digest is stored');
  t.same(await new TokenVerifier(database.db, 0).verify(secret), { id: (await database.db.query('SELECT id FROM api_tokens')).rows[0].id, name: 'okta', scopes: ['scim:read', 'scim:write'] });

  const dup = await token(env, 'create', 'okta');
  t.equal(dup.code, 1);
  t.match(dup.stderr, /an active token named "okta" exists/);

  const rotated = await token(env, 'rotate', 'okta');
  t.equal(rotated.code, 0);
  const verifier = new TokenVerifier(database.db, 0);
  t.equal(await verifier.verify(secret), null, 'the old token stops working');
  t.equal((await verifier.verify(rotated.stdout.trim()))?.name, 'okta');

  const listed = await token(env, 'list');
  t.notMatch(listed.stdout, rotated.stdout.trim(), 'list never prints secrets');
  t.match(listed.stdout, /okta\tscim:read,scim:write\tactive/);

  t.equal((await token(env, 'revoke', 'okta')).code, 0);
  t.equal(await verifier.verify(rotated.stdout.trim()), null, 'a revoked token stops working');
  t.equal((await token(env, 'create', 'x', 'root')).code, 2, 'unknown scopes are refused');
});
