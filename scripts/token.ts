/**
 * `npm run token -- <command>`: manage API bearer tokens in the database at DATABASE_URL.
 *
 *   create <name> [scope ...]   issue a token (scopes: scim:read scim:write admin metrics:read; default both scim
 *                               scopes) and print it once; only its SHA-256 digest is stored
 *   rotate <name>               revoke the active token of that name and issue a new one
 *   revoke <name>               revoke the active token of that name
 *   list                        names, scopes and last use of every token (never the secrets)
 */
import { openCliDatabase } from './cli-database.js';
import { createToken, revokeToken, TOKEN_SCOPES, type TokenScope } from '../core/auth/tokens.js';

const USAGE = 'usage: npm run token -- create <name> [scope ...] | rotate <name> | revoke <name> | list';

async function main(argv: string[]): Promise<number> {
  const [command, name, ...rest] = argv;
  if (!command || (command !== 'list' && !name)) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const scopes = (rest.length ? rest : ['scim:read', 'scim:write']) as TokenScope[];
  const unknown = scopes.filter((s) => !(TOKEN_SCOPES as readonly string[]).includes(s));
  if (unknown.length) {
    process.stderr.write(`unknown scope(s): ${unknown.join(', ')}; known: ${TOKEN_SCOPES.join(', ')}\n`);
    return 2;
  }

  const db = await openCliDatabase({ migrate: true, missingHint: 'with the embedded database, set SCIM_TOKEN for `npm start` instead' });
  if (typeof db === 'number') return db;
  try {
    switch (command) {
      case 'create':
      case 'rotate': {
        if (command === 'rotate') {
          const { rows } = await db.query<{ scopes: TokenScope[] }>('SELECT scopes FROM api_tokens WHERE name = $1 AND revoked_at IS NULL', [name]);
          if (!rows[0]) {
            process.stderr.write(`no active token named "${name}"\n`);
            return 1;
          }
          scopes.splice(0, scopes.length, ...rows[0].scopes);
          await revokeToken(db, name!);
        }
        try {
          const { token } = await createToken(db, name!, scopes);
          process.stdout.write(`${token}\n`);
          process.stderr.write(`token "${name}" (${scopes.join(' ')}) created; it is shown only this once\n`);
        } catch (err) {
          if ((err as { code?: string }).code === '23505') {
            process.stderr.write(`an active token named "${name}" exists; use rotate or revoke\n`);
            return 1;
          }
          throw err;
        }
        return 0;
      }
      case 'revoke':
        if (await revokeToken(db, name!)) {
          process.stderr.write(`token "${name}" revoked\n`);
          return 0;
        }
        process.stderr.write(`no active token named "${name}"\n`);
        return 1;
      case 'list': {
        const { rows } = await db.query<{ name: string; scopes: string[]; created_at: Date; last_used_at: Date | null; revoked_at: Date | null }>(
          'SELECT name, scopes, created_at, last_used_at, revoked_at FROM api_tokens ORDER BY name, created_at',
        );
        for (const r of rows) {
          const state = r.revoked_at ? `revoked ${r.revoked_at.toISOString()}` : 'active';
          const used = r.last_used_at ? r.last_used_at.toISOString() : 'never';
          process.stdout.write(`${r.name}\t${r.scopes.join(',')}\t${state}\tlast used ${used}\n`);
        }
        return 0;
      }
      default:
        process.stderr.write(`${USAGE}\n`);
        return 2;
    }
  } finally {
    await db.end();
  }
}

process.exit(await main(process.argv.slice(2)));
