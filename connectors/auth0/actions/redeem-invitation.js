/**
 * Auth0 Action (post-login trigger): redeems a SCIM gateway invitation at the invitee's first login.
 *
 * The invitation link the invitee received is the application's login URL with
 * `?scim_invitation=<token>`; the application passes that parameter on to Auth0's /authorize, so
 * this Action sees it in `event.request.query`. It sends the token, with the email and user_id of
 * the user logging in, to the gateway, which grants the invitation's entitlements when the token is
 * valid: used once, not expired, not revoked, and sent to this user's email. Anything else denies
 * the login with the gateway's explanation. A user the gateway marked invited
 * (`app_metadata.scimGatewayInvitation.pending`) who logs in without the link is denied too, with
 * a hint to use the link; after a successful redemption the mark is removed.
 *
 * Secrets (Actions → this Action → Secrets):
 *   GATEWAY_URL            the gateway's public base URL, e.g. https://scim-gateway.example.com
 *   GATEWAY_SOURCE         the source's id in the gateway, e.g. auth0-main
 *   GATEWAY_ACTION_SECRET  the value of the source's actionSecret
 * No npm modules. docs/auth0.md describes the set-up.
 */

/** The app_metadata key the gateway marks invited users with. */
const INVITED_KEY = 'scimGatewayInvitation';
/** The /authorize parameter carrying the invitation token. */
const TOKEN_PARAMETER = 'scim_invitation';
const TIMEOUT_MS = 10000;

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
 * @param {import('./post-login').PostLoginEvent} event
 * @param {import('./post-login').PostLoginApi} api
 */
exports.onExecutePostLogin = async (event, api) => {
  const query = (event.request && event.request.query) || {};
  const token = typeof query[TOKEN_PARAMETER] === 'string' ? query[TOKEN_PARAMETER] : undefined;
  const metadata = event.user.app_metadata || {};
  const mark = metadata[INVITED_KEY];
  const invited = !!mark && typeof mark === 'object' && /** @type {{ pending?: unknown }} */ (mark).pending === true;
  if (!token) {
    if (invited) api.access.deny('Please sign in for the first time with the invitation link you received.');
    return;
  }
  let answer;
  try {
    answer = await callGateway(event, '/invitations/redeem', { token, email: event.user.email || '', userId: event.user.user_id, name: event.user.name });
  } catch {
    api.access.deny('Your invitation could not be checked right now. Please try again in a few minutes.');
    return;
  }
  if (answer.status === 200) {
    if (invited) api.user.setAppMetadata(INVITED_KEY, null);
    return;
  }
  const message = typeof answer.json.message === 'string' && answer.status === 403 ? answer.json.message : 'Your invitation could not be checked right now. Please try again in a few minutes.';
  api.access.deny(message);
};
