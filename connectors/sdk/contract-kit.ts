/**
 * The contract test kit: the same round trip run against every connector and its fake target, so a
 * new connector proves it behaves as the engine expects before it touches a real system.
 *
 *   validate → create account (again: alreadyApplied, same remoteId) → list shows it → grant (again:
 *   alreadyApplied) → list grants shows it → revoke (again: alreadyApplied) → deprovision (disable
 *   and/or delete, each twice) → the target shows no active account and no grant left.
 *
 * Call it from a tap test with an instance wired to the connector's fake target.
 */
import type { Test } from 'tap';
import type { AccountInput, ConnectorDefinition, ConnectorInstance, EntitlementRef, Page } from './contract.js';

export interface ContractKitOptions {
  definition: ConnectorDefinition;
  instance: ConnectorInstance;
  /** An entitlement valid for this connector's target. */
  entitlement: EntitlementRef;
  /** The user to provision; defaults to a generated one. */
  user?: AccountInput;
}

/** Reads every page of a paginated listing (with a guard against cursors that never end). */
export async function collectPages<T>(fetchPage: (cursor?: string) => Promise<Page<T>>, maxPages = 10_000): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | undefined;
  for (let i = 0; i < maxPages; i++) {
    const page = await fetchPage(cursor);
    out.push(...page.items);
    if (!page.next) return out;
    if (page.next === cursor) throw new Error(`pagination returned the same cursor twice: ${cursor}`);
    cursor = page.next;
  }
  throw new Error(`pagination did not end after ${maxPages} pages`);
}

export function sampleUser(suffix = Math.random().toString(36).slice(2, 8)): AccountInput {
  const userName = `contract.${suffix}@example.com`;
  return {
    userId: `00000000-0000-4000-8000-${suffix.padStart(12, '0').slice(-12)}`,
    userName,
    active: true,
    displayName: `Contract ${suffix}`,
    givenName: 'Contract',
    familyName: suffix,
    email: userName,
    attributes: { userName, emails: [{ value: userName, primary: true }] },
  };
}

export async function runContractKit(t: Test, opts: ContractKitOptions): Promise<void> {
  const { definition: def, instance: c, entitlement } = opts;
  const user = opts.user ?? sampleUser();
  const can = (cap: (typeof def.capabilities)[number]) => def.capabilities.includes(cap);

  await t.test(`${def.type}: declared capabilities have methods`, async (t) => {
    for (const cap of def.capabilities) t.type((c as unknown as Record<string, unknown>)[cap], 'function', `${cap} is implemented`);
    t.ok(can('createAccount'), 'every connector can create accounts');
  });

  await t.test(`${def.type}: validate`, async (t) => {
    await t.resolves(c.validate(), 'validate() succeeds against the target');
  });

  let remoteId = '';
  await t.test(`${def.type}: createAccount is idempotent`, async (t) => {
    const first = await c.createAccount!(user);
    t.equal(first.status, 'applied', 'the first create applies');
    t.ok(first.remoteId, 'and answers the remote id');
    remoteId = first.remoteId!;
    const again = await c.createAccount!(user);
    t.equal(again.status, 'alreadyApplied', 'creating it again is alreadyApplied');
    t.equal(again.remoteId, remoteId, 'with the same remote id');
  });

  if (can('listAccounts')) {
    await t.test(`${def.type}: listAccounts shows it`, async (t) => {
      const accounts = await collectPages((cursor) => c.listAccounts!(cursor));
      const found = accounts.find((a) => a.remoteId === remoteId);
      t.ok(found, `account ${remoteId} is listed`);
      t.not(found?.active, false, 'and active');
    });
  }

  if (can('updateAccount')) {
    await t.test(`${def.type}: updateAccount is idempotent`, async (t) => {
      const changed = { ...user, displayName: `${user.displayName ?? user.userName} (renamed)` };
      t.equal((await c.updateAccount!(remoteId, changed)).status, 'applied');
      t.equal((await c.updateAccount!(remoteId, changed)).status, 'alreadyApplied', 'the same update again changes nothing');
    });
  }

  if (can('grant')) {
    await t.test(`${def.type}: grant and revoke are idempotent`, async (t) => {
      t.equal((await c.grant!(remoteId, entitlement)).status, 'applied', 'grant applies');
      t.equal((await c.grant!(remoteId, entitlement)).status, 'alreadyApplied', 'granting again is alreadyApplied');
      if (can('listGrants')) {
        const holders = await collectPages((cursor) => c.listGrants!(entitlement, cursor));
        t.ok(holders.includes(remoteId), 'listGrants shows the grant');
      }
      t.ok(can('revoke'), 'a connector that grants can revoke');
      t.equal((await c.revoke!(remoteId, entitlement)).status, 'applied', 'revoke applies');
      t.equal((await c.revoke!(remoteId, entitlement)).status, 'alreadyApplied', 'revoking again is alreadyApplied');
      if (can('listGrants')) {
        const holders = await collectPages((cursor) => c.listGrants!(entitlement, cursor));
        t.notOk(holders.includes(remoteId), 'listGrants no longer shows it');
      }
    });
  }

  await t.test(`${def.type}: deprovision is idempotent`, async (t) => {
    t.ok(can('disableAccount') || can('deleteAccount'), 'a connector can deprovision');
    if (can('grant')) t.equal((await c.grant!(remoteId, entitlement)).status, 'applied', 'a grant to be cleaned up by deprovisioning');
    if (can('revoke')) await c.revoke!(remoteId, entitlement);
    if (can('disableAccount')) {
      t.equal((await c.disableAccount!(remoteId)).status, 'applied', 'disable applies');
      t.equal((await c.disableAccount!(remoteId)).status, 'alreadyApplied', 'disabling again is alreadyApplied');
    }
    if (can('deleteAccount')) {
      t.equal((await c.deleteAccount!(remoteId)).status, 'applied', 'delete applies');
      t.equal((await c.deleteAccount!(remoteId)).status, 'alreadyApplied', 'deleting again is alreadyApplied');
    }
  });

  await t.test(`${def.type}: afterwards the target holds nothing for the user`, async (t) => {
    if (can('listAccounts')) {
      const accounts = await collectPages((cursor) => c.listAccounts!(cursor));
      const left = accounts.find((a) => a.remoteId === remoteId);
      t.ok(!left || left.active === false, 'no active account is left');
    }
    if (can('listGrants')) {
      const holders = await collectPages((cursor) => c.listGrants!(entitlement, cursor));
      t.notOk(holders.includes(remoteId), 'no grant is left');
    }
  });
}
