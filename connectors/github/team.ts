/**
 * Entitlements: the organization role (`{ "org": "member" | "admin" }`) and team membership with a
 * role (`{ "team": "<slug>", "role": "member" | "maintainer" }`). Roles are exact: a maintainer
 * does not hold the team's member entitlement, and granting one role replaces the other.
 */
import { Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import type { EntitlementRef, Page, WriteResult } from '@scim-gateway/connector-sdk';
import { PermanentError } from '@scim-gateway/connector-sdk';
import type { GitHubClient, ListPage } from './client.js';
import { emailRemoteId, parseCursor, parseRemoteId, type Invitation, type Invitee, type MemberOperations } from './member.js';

const OrgEntitlement = Type.Object(
  {
    org: Type.Union([Type.Literal('member'), Type.Literal('admin')], {
      description: 'member: belongs to the organization (every active or invited member holds it); admin: is an organization owner.',
    }),
  },
  { additionalProperties: false },
);

const TeamEntitlement = Type.Object(
  {
    team: Type.String({ pattern: '^[a-z0-9][a-z0-9_.-]*$', maxLength: 255, description: "The team's slug, as in https://github.com/orgs/<org>/teams/<slug>." }),
    role: Type.Optional(
      Type.Union([Type.Literal('member'), Type.Literal('maintainer')], { default: 'member', description: 'The role in the team (default member).' }),
    ),
  },
  { additionalProperties: false },
);

export const githubEntitlementSchema = Type.Union([OrgEntitlement, TeamEntitlement], {
  description: 'An organization role ({"org": "member" | "admin"}) or a team membership ({"team": "<slug>", "role": "member" | "maintainer"}).',
});

type Target = { kind: 'org'; role: 'member' | 'admin' } | { kind: 'team'; slug: string; role: 'member' | 'maintainer' };

function target(entitlement: EntitlementRef): Target {
  if (Value.Check(OrgEntitlement, entitlement.target)) return { kind: 'org', role: entitlement.target.org };
  if (Value.Check(TeamEntitlement, entitlement.target)) {
    const t = entitlement.target;
    return { kind: 'team', slug: t.team, role: t.role ?? 'member' };
  }
  throw new PermanentError(`github: entitlement ${entitlement.id} has a target this connector does not understand: ${JSON.stringify(entitlement.target)}`, 'invalidEntitlement');
}

interface TeamMembership {
  role: 'member' | 'maintainer';
  state: 'active' | 'pending';
}

export class TeamOperations {
  constructor(
    private readonly client: GitHubClient,
    private readonly members: MemberOperations,
  ) {}

  private get org(): string {
    return this.members.org;
  }

  private noUsername(what: string, invitee: Invitee & { kind: 'email' }, role: string): PermanentError {
    return new PermanentError(
      `${what} failed: ${invitee.email} was invited by email and has no GitHub username yet, so cannot be given ${role}; set the user's GitHub username attribute and it will be applied`,
      'unsupported',
    );
  }

  async grant(remoteId: string, entitlement: EntitlementRef): Promise<WriteResult> {
    const what = 'github: grant';
    const t = target(entitlement);
    const invitee = parseRemoteId(remoteId);
    if (t.kind === 'org') {
      if (invitee.kind === 'email') {
        if (t.role === 'admin') throw this.noUsername(what, invitee, 'the owner role');
        if (await this.members.findInvitation(what, invitee.email)) return { status: 'alreadyApplied' };
        await this.members.invite(what, invitee.email);
        return { status: 'applied' };
      }
      const current = await this.members.membership(what, invitee.login);
      if (current && (t.role === 'member' || current.role === 'admin')) return { status: 'alreadyApplied' };
      await this.members.setMembership(what, invitee.login, t.role);
      return { status: 'applied' };
    }
    if (invitee.kind === 'email') throw this.noUsername(what, invitee, `team ${t.slug}`);
    const params = { org: this.org, team_slug: t.slug, username: invitee.login };
    const current = await this.client.find<TeamMembership>(what, 'GET /orgs/{org}/teams/{team_slug}/memberships/{username}', params);
    if (current?.role === t.role) return { status: 'alreadyApplied' };
    try {
      // For someone not yet in the organization GitHub sends an invitation; the membership is pending until accepted.
      await this.client.request(what, 'PUT /orgs/{org}/teams/{team_slug}/memberships/{username}', { ...params, role: t.role });
    } catch (err) {
      if (err instanceof PermanentError && err.kind === 'notFound') {
        throw new PermanentError(`${err.message}; no team "${t.slug}" in "${this.org}", or no GitHub user "${invitee.login}"`, 'notFound', { cause: err });
      }
      throw err;
    }
    return { status: 'applied' };
  }

  async revoke(remoteId: string, entitlement: EntitlementRef): Promise<WriteResult> {
    const what = 'github: revoke';
    const t = target(entitlement);
    const invitee = parseRemoteId(remoteId);
    if (t.kind === 'org') {
      // Organization membership is the account itself: it ends with deprovisioning, by the policy.
      if (t.role === 'member' || invitee.kind === 'email') return { status: 'alreadyApplied' };
      const current = await this.members.membership(what, invitee.login);
      if (current?.role !== 'admin') return { status: 'alreadyApplied' };
      await this.members.setMembership(what, invitee.login, 'member');
      return { status: 'applied' };
    }
    if (invitee.kind === 'email') return { status: 'alreadyApplied' };
    const params = { org: this.org, team_slug: t.slug, username: invitee.login };
    const current = await this.client.find<TeamMembership>(what, 'GET /orgs/{org}/teams/{team_slug}/memberships/{username}', params);
    if (!current || current.role !== t.role) return { status: 'alreadyApplied' };
    await this.client.request(what, 'DELETE /orgs/{org}/teams/{team_slug}/memberships/{username}', params);
    return { status: 'applied' };
  }

  /**
   * One page of the entitlement's holders: active members with the role (cursor `members:<page>`),
   * then pending invitations that carry it (`invitations:<page>`).
   */
  async listGrants(entitlement: EntitlementRef, cursor?: string): Promise<Page<string>> {
    const what = 'github: listGrants';
    const t = target(entitlement);
    const { phase, page } = parseCursor(cursor, ['members', 'invitations']);
    if (phase === 'members') {
      const res =
        t.kind === 'org'
          ? await this.client.listPage<{ login: string }>(what, 'GET /orgs/{org}/members', { org: this.org, role: t.role === 'admin' ? 'admin' : 'all' }, page)
          : await this.teamPage<{ login: string }>(what, 'GET /orgs/{org}/teams/{team_slug}/members', { org: this.org, team_slug: t.slug, role: t.role }, page);
      return { items: res.items.map((u) => u.login.toLowerCase()), next: res.nextPage ? `members:${res.nextPage}` : 'invitations:1' };
    }
    const items: string[] = [];
    let nextPage: number | undefined;
    if (t.kind === 'org') {
      const res = await this.client.listPage<Invitation>(what, 'GET /orgs/{org}/invitations', { org: this.org }, page);
      nextPage = res.nextPage;
      for (const inv of res.items) {
        if (t.role === 'admin' && inv.role !== 'admin') continue;
        if (inv.login) items.push(inv.login.toLowerCase());
        else if (inv.email) items.push(emailRemoteId(inv.email));
      }
    } else {
      const res = await this.teamPage<Invitation>(what, 'GET /orgs/{org}/teams/{team_slug}/invitations', { org: this.org, team_slug: t.slug }, page);
      nextPage = res.nextPage;
      for (const inv of res.items) {
        if (!inv.login) {
          if (inv.email && t.role === 'member') items.push(emailRemoteId(inv.email));
          continue;
        }
        // An invitation does not say the team role; the pending membership does.
        const m: TeamMembership | undefined = await this.client.find<TeamMembership>(what, 'GET /orgs/{org}/teams/{team_slug}/memberships/{username}', { org: this.org, team_slug: t.slug, username: inv.login });
        if (m?.role === t.role) items.push(inv.login.toLowerCase());
      }
    }
    return { items, next: nextPage ? `invitations:${nextPage}` : undefined };
  }

  private async teamPage<T>(what: string, route: string, params: { org: string; team_slug: string } & Record<string, unknown>, page: number): Promise<ListPage<T>> {
    try {
      return await this.client.listPage<T>(what, route, params, page);
    } catch (err) {
      if (err instanceof PermanentError && err.kind === 'notFound') {
        throw new PermanentError(`${err.message}; no team "${params.team_slug}" in "${params.org}"`, 'notFound', { cause: err });
      }
      throw err;
    }
  }
}
