/**
 * Auth0 Action (post-login trigger): holds a login until the SCIM gateway has provisioned the
 * user's accounts, showing them a live status page meanwhile.
 *
 * onExecutePostLogin asks the gateway whether the user's accounts are ready. The gateway finds (or
 * creates) the directory user and starts provisioning; if everything is in place the login goes on
 * at once. Otherwise the user is sent to the gateway's status page with a signed, short-lived
 * session token. The page shows each target turning ready or failed and then returns to Auth0's
 * /continue with a continue token signed with the shared secret. onContinuePostLogin checks that
 * token (signature, expiry, this user, this login's state) and lets the login go on, or denies it
 * with what failed when the gateway's policy says so.
 *
 * Secrets (Actions → this Action → Secrets):
 *   GATEWAY_URL            the gateway's public base URL, e.g. https://scim-gateway.example.com
 *   GATEWAY_SOURCE         the source's id in the gateway, e.g. auth0-main
 *   GATEWAY_ACTION_SECRET  the value of the source's actionSecret
 * No npm modules (node:crypto is built in). docs/auth0.md describes the set-up. Put this Action after
 * "redeem-invitation" in the post-login flow, so an invitee's entitlements exist before the check.
 */
// Auth0 runs Actions as CommonJS modules.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const crypto = require('crypto');

const TIMEOUT_MS = 10000;
const UNAVAILABLE = 'We could not check your accounts right now. Please try again in a few minutes.';

/**
 * @param {import('./post-login').PostLoginEvent} event
 * @param {string} path
 * @param {unknown} body
 * @returns {Promise<{ status: number, json: Record<string, unknown> }>}
 */
async function callGateway(event, path, body) {
  const base = String(event.secrets.GATEWAY_URL || '').replace(/\/+$/, '');
  const source = encodeURIComponent(String(event.secrets.GATEWAY_SOURCE || ''));
  const res = await fetch(`${base}/auth0/${source}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${event.secrets.GATEWAY_ACTION_SECRET}` },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  /** @type {Record<string, unknown>} */
  let json = {};
  try {
    /** @type {unknown} */
    const parsed = await res.json();
    if (parsed && typeof parsed === 'object') json = /** @type {Record<string, unknown>} */ (parsed);
  } catch {
    json = {};
  }
  return { status: res.status, json };
}

/**
 * The claims of an HS256 token signed with `secret` that has not expired, else undefined (the
 * gateway's core/logins/tokens.ts signs it the same way).
 * @param {string} secret
 * @param {string} token
 * @returns {Record<string, unknown> | undefined}
 */
function verifyToken(secret, token) {
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  // The signature's text is compared (only the canonical base64url spelling is accepted).
  const expected = Buffer.from(crypto.createHmac('sha256', secret).update(`${parts[0]}.${parts[1]}`).digest('base64url'));
  const given = Buffer.from(parts[2] || '');
  if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) return undefined;
  try {
    /** @type {unknown} */
    const header = JSON.parse(Buffer.from(parts[0] || '', 'base64url').toString('utf8'));
    /** @type {unknown} */
    const claims = JSON.parse(Buffer.from(parts[1] || '', 'base64url').toString('utf8'));
    if (!header || typeof header !== 'object' || /** @type {{ alg?: unknown }} */ (header).alg !== 'HS256') return undefined;
    if (!claims || typeof claims !== 'object') return undefined;
    const c = /** @type {Record<string, unknown>} */ (claims);
    if (typeof c.exp !== 'number' || c.exp * 1000 <= Date.now()) return undefined;
    return c;
  } catch {
    return undefined;
  }
}

/**
 * @param {import('./post-login').PostLoginEvent} event
 * @param {import('./post-login').PostLoginApi} api
 */
exports.onExecutePostLogin = async (event, api) => {
  let answer;
  try {
    answer = await callGateway(event, '/logins', {
      userId: event.user.user_id,
      email: event.user.email || '',
      name: event.user.name,
      hostname: (event.request && event.request.hostname) || '',
    });
  } catch {
    api.access.deny(UNAVAILABLE);
    return;
  }
  if (answer.status === 403 && typeof answer.json.message === 'string') {
    api.access.deny(answer.json.message);
    return;
  }
  if (answer.status !== 200) {
    api.access.deny(UNAVAILABLE);
    return;
  }
  if (answer.json.ready === true) return;
  const base = String(event.secrets.GATEWAY_URL || '').replace(/\/+$/, '');
  api.redirect.sendUserTo(`${base}${String(answer.json.path)}`, { query: { session: String(answer.json.session) } });
};

/**
 * @param {import('./post-login').PostLoginEvent} event
 * @param {import('./post-login').PostLoginApi} api
 */
exports.onContinuePostLogin = async (event, api) => {
  const query = (event.request && event.request.query) || {};
  const token = typeof query.gateway_token === 'string' ? query.gateway_token : '';
  const claims = verifyToken(String(event.secrets.GATEWAY_ACTION_SECRET || ''), token);
  if (!claims || claims.typ !== 'login-continue' || claims.sub !== event.user.user_id || typeof query.state !== 'string' || claims.state !== query.state) {
    api.access.deny('Your sign-in could not be completed. Please sign in again.');
    return;
  }
  if (claims.allow === true) return;
  /** @type {unknown[]} */
  const failed = Array.isArray(claims.failed) ? claims.failed : [];
  const what = failed
    .map((f) => {
      const x = /** @type {{ target?: unknown, reason?: unknown }} */ (f);
      return `${String(x.target)}: ${String(x.reason)}`;
    })
    .join('; ');
  api.access.deny(`Your accounts could not be set up${what ? ` (${what})` : ''}. Contact your administrator.`);
};
