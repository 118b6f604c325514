/**
 * Okta → gateway → GitHub and Google Groups, end to end on the real Temporal dev server and
 * PostgreSQL: Okta's SCIM requests as its provisioning documentation describes them (look up the
 * user, create them with a custom extension attribute carrying the GitHub login, push the group
 * "Engineering" and its members, deactivate with a PatchOp) make the GitHub team membership and the
 * Google group membership appear, and then disappear. GitHub's traffic passes through a Prism proxy
 * validating it against GitHub's official OpenAPI description; Google's token endpoint verifies the
 * service account's signed assertion and the impersonated admin.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startTestStack } from '../helpers/stack.js';
import { eventually } from '../helpers/temporal.js';
import { startFakeGitHub } from './github/fake-github.js';
import { startPrism } from './github/prism.js';
import { startFakeGoogle } from './google-groups/fake-google.js';

const CORE_USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
const LIST = 'urn:ietf:params:scim:api:messages:2.0:ListResponse';
const ACME = 'urn:ietf:params:scim:schemas:extension:acme:2.0:User';
const GH_TOKEN = 'ghp_oktaEndToEnd0123456789abcdefghij';

// Okta sends custom app attributes in an extension schema the gateway declares.
const dir = mkdtempSync(join(tmpdir(), 'scimgw-okta-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const extensions = join(dir, 'extensions.json');
writeFileSync(extensions, JSON.stringify([{ id: ACME, name: 'AcmeUser', resourceType: 'User', attributes: [{ name: 'githubUsername', description: 'GitHub login' }] }]));

const github = await startFakeGitHub({ tokens: [GH_TOKEN] });
t.teardown(() => github.close());
const prism = await startPrism(github.url);
t.teardown(() => prism.close());
const google = await startFakeGoogle();
t.teardown(() => google.close());
// The in-process worker resolves env: references from its own environment.
process.env.OKTA_E2E_GH_TOKEN = GH_TOKEN;
process.env.OKTA_E2E_GOOGLE_KEY = google.serviceAccount.keyJson();

const { gw } = await startTestStack(t, { idleMs: 500, env: { SCIM_EXTENSIONS_FILE: extensions } });
const api = gw.call;

const ENG_GROUP = 'eng@example.com';
const email = `alice@${google.domain}`;

let groupId = '';

t.test('Okta pushes the group Engineering; an operator maps it to a GitHub team and a Google group', async (t) => {
  // Push Groups: Okta looks the group up by name, then creates it (members follow in PatchOps).
  const found = await api('GET', `/scim/v2/Groups?filter=${encodeURIComponent('displayName eq "Engineering"')}&startIndex=1&count=100`);
  t.equal(found.totalResults, 0);
  groupId = (await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Engineering', members: [] }, 201)).id as string;
  github.addTeam('eng');
  github.addUser('Alice-L');
  google.addGroup(ENG_GROUP, 'Engineering');
  google.addUser(email);
  await api('PUT', '/api/connectors/github', {
    id: 'github',
    type: 'github',
    config: { baseUrl: prism.url, org: 'acme', token: 'env:OKTA_E2E_GH_TOKEN', usernameAttribute: `${ACME}:githubUsername` },
  });
  await api('PUT', '/api/connectors/google', {
    id: 'google',
    type: 'google-groups',
    config: { serviceAccountKey: 'env:OKTA_E2E_GOOGLE_KEY', subject: `admin@${google.domain}`, rootUrl: google.url, oauthEndpoint: google.tokenUrl },
  });
  t.same(await api('POST', '/api/connectors/github/test'), { ok: true }, 'the GitHub credentials and organization check out');
  t.same(await api('POST', '/api/connectors/google/test'), { ok: true }, 'the Google delegation checks out');
  await api('POST', '/api/entitlements', { connectorId: 'github', name: 'eng-team', target: { team: 'eng', role: 'member' } }, 201);
  await api('POST', '/api/entitlements', { connectorId: 'google', name: 'eng-group', target: { group: ENG_GROUP, role: 'MEMBER' } }, 201);
  await api('POST', '/api/rules', { name: 'engineering', group: 'Engineering', entitlements: ['github/eng-team', 'google/eng-group'] }, 201);
});

let userId = '';
/** alice's pending invitation to the GitHub organization (a username invitation carries its teams). */
const invitation = () => [...github.invitations.values()].find((i) => i.login?.toLowerCase() === 'alice-l');

t.test('Okta creates the user and pushes their Engineering membership: both memberships appear', async (t) => {
  // 1. Okta first looks the user up by userName.
  const lookup = await api('GET', `/scim/v2/Users?filter=${encodeURIComponent(`userName eq "${email}"`)}&startIndex=1&count=100`);
  t.same(lookup, { schemas: [LIST], totalResults: 0, startIndex: 1, itemsPerPage: 0, Resources: [] }, 'not there yet');
  // 2. It creates the user with the profile attributes the app maps, custom ones in the extension.
  const created = await api(
    'POST',
    '/scim/v2/Users',
    {
      schemas: [CORE_USER, ACME],
      userName: email,
      name: { givenName: 'Alice', familyName: 'Liddell' },
      emails: [{ primary: true, value: email, type: 'work' }],
      displayName: 'Alice Liddell',
      locale: 'en-US',
      externalId: '00u1abcdEFGHijkl0h7',
      groups: [],
      password: 'Okta-Generated-1!',
      active: true,
      [ACME]: { githubUsername: 'Alice-L' },
    },
    201,
  );
  userId = created.id as string;
  t.notOk('password' in created, 'the password is never returned');
  // 3. The pushed group's new member, as a PatchOp.
  await api('PATCH', `/scim/v2/Groups/${groupId}`, {
    schemas: [PATCH],
    Operations: [{ op: 'add', path: 'members', value: [{ value: userId, display: email }] }],
  });

  await eventually(
    async () => invitation()?.teams.get('eng') === 'member' && google.roleOf(ENG_GROUP, email) === 'MEMBER',
    90_000,
    'alice invited to the GitHub organization with team eng, and in the Google group',
  );
  t.pass('GitHub holds a pending membership of team eng for alice-l; alice is a MEMBER of eng@');
  // She accepts GitHub's invitation: the pending team membership becomes a real one.
  github.accept('alice-l');
  t.equal(github.teams.get('eng')?.members.get('alice-l'), 'member', 'alice-l is a member of team eng');
  const accounts: Array<{ connectorId: string; remoteId: string; state: string; lastError: string | null }> = await api('GET', `/api/users/${userId}/provisioning`);
  t.match(
    accounts.sort((a, b) => a.connectorId.localeCompare(b.connectorId)),
    [
      { connectorId: 'github', remoteId: 'alice-l', state: 'active', lastError: null },
      { connectorId: 'google', remoteId: email, state: 'active', lastError: null },
    ],
  );
  const grants: Array<{ connectorId: string; entitlement: string; reason: string }> = await api('GET', `/api/grants?userId=${userId}`);
  t.same(grants.map((g) => `${g.connectorId}/${g.entitlement} ${g.reason}`).sort(), ['github/eng-team rule:engineering', 'google/eng-group rule:engineering'], 'who has what and why');
});

t.test('Okta deactivates the user: both memberships disappear', async (t) => {
  await api('PATCH', `/scim/v2/Users/${userId}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { active: false } }] });
  await eventually(
    async () => !github.members.has('alice-l') && !invitation() && google.roleOf(ENG_GROUP, email) === undefined,
    90_000,
    'alice out of the GitHub organization and the Google group',
  );
  t.notOk(github.teams.get('eng')?.members.has('alice-l'), 'removed from the organization (removeFromOrg, the default policy), alice-l is out of team eng too');
  t.same(await api('GET', `/api/grants?userId=${userId}`), [], 'no grant remains');
  t.equal(google.user(email)?.suspended ?? false, false, 'the Workspace user is not suspended without the suspend policy');
  t.same(prism.violations(), [], 'Prism saw no request or answer that breaks GitHub\'s OpenAPI description');
});
