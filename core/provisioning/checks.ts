/**
 * Checks and lookups shared by the admin API and the declarative provisioning file, so both accept
 * exactly the same configuration and announce changes to the same users.
 */
import { Value } from '@sinclair/typebox/value';
import type { ConnectorDefinition } from '../../connectors/index.js';
import { isSecretReference } from '@scim-gateway/connector-sdk';
import type { Tx } from '../db/pool.js';

const SECRET_KEY = /(secret|token|password|passwd|private_?key|privatekey|api_?key|credential)/i;

/** Paths of configuration values that look like secrets (by their key) but are not references. */
export function plaintextSecrets(value: unknown, path = ''): string[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => plaintextSecrets(v, `${path}[${i}]`));
  if (typeof value !== 'object' || value === null) return [];
  return Object.entries(value).flatMap(([k, v]) => {
    const here = path ? `${path}.${k}` : k;
    if (SECRET_KEY.test(k) && typeof v === 'string' && !isSecretReference(v)) return [here];
    return plaintextSecrets(v, here);
  });
}

/** Why an entitlement's target does not fit the connector type's schema (empty when it does). */
export function targetProblems(def: ConnectorDefinition, target: unknown): string[] {
  if (Value.Check(def.entitlementSchema, target)) return [];
  return [...Value.Errors(def.entitlementSchema, target)].slice(0, 5).map((e) => `${e.path || '/'}: ${e.message}`);
}

/** Users a rule may cover: the members (nested included) of its group, or every live user for a condition. */
export async function coveredUsers(tx: Tx, groupId: string | null): Promise<string[]> {
  const { rows } = groupId
    ? await tx.query<{ id: string }>(
        `WITH RECURSIVE below(id) AS (SELECT $1::uuid UNION SELECT m.member_id FROM group_members m JOIN below b ON m.group_id = b.id WHERE m.member_type = 'Group')
         SELECT DISTINCT m.member_id AS id FROM group_members m JOIN below b ON m.group_id = b.id WHERE m.member_type = 'User'`,
        [groupId],
      )
    : await tx.query<{ id: string }>('SELECT id FROM users WHERE deleted_at IS NULL');
  return rows.map((r) => r.id);
}
