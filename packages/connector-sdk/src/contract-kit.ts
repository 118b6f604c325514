/**
 * The contract test kit: the same round trip run against every connector and its fake target, so a
 * new connector proves it behaves as the engine expects before it touches a real system.
 *
 * It runs under any test runner: pass the runner's `test(name, fn)` (node:test's `test`, tap's
 * `t.test.bind(t)`, vitest's `test`); each step is one named test whose failures are thrown
 * `node:assert` errors.
 *
 * What it checks, and why each check is shaped as it is:
 * - Every write is repeated on a *fresh instance* from `connect()`, so idempotency has to come from
 *   the target, as it must when the engine retries an activity on another worker, not from a cache
 *   in the instance.
 * - Listings are read over more than one page: the `seedAccounts` / `seedGrants` hooks put enough in
 *   the target, and the kit insists on every seeded item and on a second page, so a dropped cursor
 *   or a listing cut after its first page fails instead of making an absence check pass.
 * - Deprovisioning is done with a grant still in place (the engine may deprovision an account whose
 *   grants were never recorded), and `disableAccount` and `deleteAccount` are each checked alone on
 *   their own account, so one cannot hide that the other does nothing.
 */
import assert from 'node:assert/strict';
import type { AccountInput, Capability, ConnectorDefinition, ConnectorInstance, EntitlementRef, Page } from './contract.js';

/** A test runner's `test(name, fn)`; the kit awaits what it answers. */
export type TestFunction = (name: string, fn: () => Promise<void>) => unknown;

export interface ContractKitOptions {
  /** The runner's test function: node:test's `test`, tap's `t.test.bind(t)`, vitest's `test`. */
  test: TestFunction;
  definition: ConnectorDefinition;
  /**
   * Makes a new instance wired to the connector's fake target. The kit calls it for every repeated
   * write, so all state must live in the target.
   */
  connect: () => ConnectorInstance | Promise<ConnectorInstance>;
  /** An entitlement valid for this connector's target. */
  entitlement: EntitlementRef;
  /** The user of the round trip; defaults to {@link sampleUser}. */
  user?: AccountInput;
  /**
   * Makes another user the target accepts, for checking deleteAccount on its own account when
   * disableAccount is declared too; defaults to {@link sampleUser}.
   */
  anotherUser?: () => AccountInput;
  /**
   * Required when `listAccounts` is declared: creates, in the target, enough accounts that
   * `listAccounts` needs more than one page, and answers their remote ids.
   */
  seedAccounts?: () => Promise<string[]>;
  /**
   * Required when `listGrants` is declared: grants `entitlement` to enough accounts that
   * `listGrants` needs more than one page, and answers their remote ids.
   */
  seedGrants?: (entitlement: EntitlementRef) => Promise<string[]>;
  /**
   * Set when the target keeps a disabled account's memberships (they give nothing while it is
   * disabled, and the engine revokes recorded grants before it disables). Unset, the kit expects a
   * disabled account to hold no grant, like a deleted one.
   */
  disableKeepsGrants?: boolean;
  /**
   * Set when the target answers every holder of an entitlement at once (a SCIM group's members):
   * the kit then still insists on every seeded holder, but not on a second page.
   */
  grantsInOnePage?: boolean;
}

/** Reads every page of a paginated listing (with a guard against cursors that never end). */
export async function collectPages<T>(fetchPage: (cursor?: string) => Promise<Page<T>>, maxPages = 10_000): Promise<T[]> {
  return (await readPages(fetchPage, maxPages)).items;
}

/** Like {@link collectPages}, also answering how many pages there were. */
export async function readPages<T>(fetchPage: (cursor?: string) => Promise<Page<T>>, maxPages = 10_000): Promise<{ items: T[]; pages: number }> {
  const items: T[] = [];
  let cursor: string | undefined;
  for (let i = 0; i < maxPages; i++) {
    const page = await fetchPage(cursor);
    items.push(...page.items);
    if (!page.next) return { items, pages: i + 1 };
    if (page.next === cursor) throw new Error(`pagination returned the same cursor twice: ${cursor}`);
    cursor = page.next;
  }
  throw new Error(`pagination did not end after ${maxPages} pages`);
}

/** A plausible user with a unique userName, for tests. */
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

/** Runs the contract round trip as a series of named tests. */
export async function runContractKit(opts: ContractKitOptions): Promise<void> {
  const { definition: def, entitlement, test } = opts;
  const type = def.type;
  const can = (cap: Capability) => def.capabilities.includes(cap);
  const user = opts.user ?? sampleUser();
  const fresh = async () => await opts.connect();
  const instances: ConnectorInstance[] = [];
  const connect = async () => {
    const c = await fresh();
    instances.push(c);
    return c;
  };
  // Each step closes the instances it made: runners that register tests and run them later
  // (vitest) finish the steps after runContractKit has returned.
  const step = async (name: string, fn: () => Promise<void>) => {
    await test(`${type}: ${name}`, async () => {
      try {
        await fn();
      } finally {
        await Promise.allSettled(instances.splice(0).map(async (c) => await c.close?.()));
      }
    });
  };
  const accounts = async (c: ConnectorInstance) => await readPages((cursor) => c.listAccounts!(cursor));
  const holders = async (c: ConnectorInstance) => await readPages((cursor) => c.listGrants!(entitlement, cursor));

  /** Creates an account for `u` and answers its remote id (or fails the step). */
  const create = async (u: AccountInput) => {
    const first = await (await connect()).createAccount!(u);
    assert.equal(first.status, 'applied', `the first createAccount of ${u.userName} applies`);
    assert.ok(first.remoteId, 'createAccount answers the remote id');
    return first.remoteId;
  };

  await step('declared capabilities have methods', async () => {
    const c = await connect();
    for (const cap of def.capabilities) assert.equal(typeof (c as unknown as Record<string, unknown>)[cap], 'function', `${cap} is declared, so it must be implemented`);
    assert.ok(can('createAccount'), 'every connector can create accounts');
    assert.ok(can('disableAccount') || can('deleteAccount'), 'every connector can deprovision (disableAccount and/or deleteAccount)');
    if (can('grant')) assert.ok(can('revoke'), 'a connector that grants can revoke');
  });

  await step('validate', async () => {
    await (await connect()).validate();
  });

  let remoteId = '';
  await step('createAccount is idempotent across instances', async () => {
    remoteId = await create(user);
    const again = await (await connect()).createAccount!(user);
    assert.equal(again.status, 'alreadyApplied', 'creating it again from a fresh instance is alreadyApplied (the target, not the instance, must know it exists)');
    assert.equal(again.remoteId, remoteId, 'with the same remote id');
  });

  if (can('listAccounts')) {
    await step('listAccounts reads every page', async () => {
      assert.ok(opts.seedAccounts, 'listAccounts is declared: give the kit a seedAccounts hook that fills more than one page');
      const seeded = await opts.seedAccounts();
      const listed = await accounts(await connect());
      const ids = new Set(listed.items.map((a) => a.remoteId));
      assert.ok(listed.pages > 1, `seedAccounts should fill more than one page; listAccounts answered ${listed.pages} page(s)`);
      const missing = seeded.filter((id) => !ids.has(id));
      assert.deepEqual(missing, [], 'every seeded account is listed (a missing one means a lost cursor or a cut listing)');
      const found = listed.items.find((a) => a.remoteId === remoteId);
      assert.ok(found, `account ${remoteId} is listed`);
      assert.notEqual(found.active, false, 'and active');
    });
  }

  if (can('updateAccount')) {
    await step('updateAccount is idempotent across instances', async () => {
      const changed = { ...user, displayName: `${user.displayName ?? user.userName} (renamed)` };
      assert.equal((await (await connect()).updateAccount!(remoteId, changed)).status, 'applied', 'the update applies');
      assert.equal((await (await connect()).updateAccount!(remoteId, changed)).status, 'alreadyApplied', 'the same update again, from a fresh instance, changes nothing');
    });
  }

  if (can('grant')) {
    if (can('listGrants')) {
      await step('listGrants reads every page', async () => {
        assert.ok(opts.seedGrants, 'listGrants is declared: give the kit a seedGrants hook that fills more than one page');
        const seeded = await opts.seedGrants(entitlement);
        const listed = await holders(await connect());
        if (!opts.grantsInOnePage) assert.ok(listed.pages > 1, `seedGrants should fill more than one page; listGrants answered ${listed.pages} page(s)`);
        const ids = new Set(listed.items);
        assert.deepEqual(seeded.filter((id) => !ids.has(id)), [], 'every seeded holder is listed (a missing one means a lost cursor or a cut listing)');
      });
    }

    await step('grant and revoke are idempotent across instances', async () => {
      assert.equal((await (await connect()).grant!(remoteId, entitlement)).status, 'applied', 'grant applies');
      assert.equal((await (await connect()).grant!(remoteId, entitlement)).status, 'alreadyApplied', 'granting again from a fresh instance is alreadyApplied');
      if (can('listGrants')) assert.ok((await holders(await connect())).items.includes(remoteId), 'listGrants shows the grant');
      assert.equal((await (await connect()).revoke!(remoteId, entitlement)).status, 'applied', 'revoke applies');
      assert.equal((await (await connect()).revoke!(remoteId, entitlement)).status, 'alreadyApplied', 'revoking again from a fresh instance is alreadyApplied');
      if (can('listGrants')) assert.ok(!(await holders(await connect())).items.includes(remoteId), 'listGrants no longer shows it');
    });
  }

  /** Deprovisions one account with `action`, a grant still in place, and checks what is left. */
  const deprovision = async (action: 'disableAccount' | 'deleteAccount', id: string) => {
    if (can('grant')) assert.equal((await (await connect()).grant!(id, entitlement)).status, 'applied', 'a grant still in place when deprovisioning');
    assert.equal((await (await connect())[action]!(id)).status, 'applied', `${action} applies`);
    assert.equal((await (await connect())[action]!(id)).status, 'alreadyApplied', `${action} again, from a fresh instance, is alreadyApplied`);
    if (can('listAccounts')) {
      // A target may keep a record of what was deleted (a revoked certificate stays in the PKI's
      // index), so a deleted account may still be listed, but never as active.
      const left = (await accounts(await connect())).items.find((a) => a.remoteId === id);
      assert.ok(!left || left.active === false, `after ${action} the account is not listed as active`);
    }
    if (can('listGrants') && !(action === 'disableAccount' && opts.disableKeepsGrants)) {
      assert.ok(!(await holders(await connect())).items.includes(id), `after ${action} the account holds no grant`);
    }
  };

  // With both declared, each gets its own account, so a disable that does nothing is not hidden by
  // the delete after it.
  const both = can('disableAccount') && can('deleteAccount');
  if (can('disableAccount')) {
    await step('disableAccount deprovisions, idempotently, leaving no grant', async () => {
      await deprovision('disableAccount', remoteId);
    });
  }
  if (can('deleteAccount')) {
    await step('deleteAccount deprovisions, idempotently, leaving nothing', async () => {
      await deprovision('deleteAccount', both ? await create((opts.anotherUser ?? sampleUser)()) : remoteId);
    });
  }
}

/**
 * Seed hooks that go through the connector itself, for a fake target with no quicker way in:
 * `count` accounts from `makeUser` (pick `count` above the target's page size), and for grants the
 * same accounts given the entitlement. Spread the result into the kit's options.
 */
export function seedThroughConnector(
  connect: () => ConnectorInstance | Promise<ConnectorInstance>,
  count: number,
  makeUser: (index: number) => AccountInput = (i) => sampleUser(`seed${String(i).padStart(4, '0')}${Math.random().toString(36).slice(2, 6)}`),
): Required<Pick<ContractKitOptions, 'seedAccounts' | 'seedGrants'>> {
  let seeded: Promise<string[]> | undefined;
  const accounts = async () => {
    const c = await connect();
    const ids: string[] = [];
    try {
      for (let i = 0; i < count; i++) {
        const { remoteId } = await c.createAccount!(makeUser(i));
        assert.ok(remoteId, 'createAccount answers the remote id of a seeded account');
        ids.push(remoteId);
      }
    } finally {
      await c.close?.();
    }
    return ids;
  };
  return {
    seedAccounts: async () => await (seeded ??= accounts()),
    seedGrants: async (entitlement) => {
      const ids = await (seeded ??= accounts());
      const c = await connect();
      try {
        for (const id of ids) await c.grant!(id, entitlement);
      } finally {
        await c.close?.();
      }
      return ids;
    },
  };
}
