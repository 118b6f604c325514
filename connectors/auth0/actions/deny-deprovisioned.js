/**
 * Auth0 Action (post-login trigger): refuses the login of users the SCIM gateway has deprovisioned.
 *
 * The gateway's auth0 connector blocks a deprovisioned user (`blocked: true`) and records why in
 * `app_metadata.scimGateway`:
 *
 *   { "deprovisioned": true, "source": "scim-gateway", "at": "<ISO time>", "connection": "<name>" }
 *
 * Auth0 already refuses blocked users; this Action is the second lock. It keeps the user out even if
 * `blocked` is cleared by hand while the flag is still there, and it tells the application why
 * (the reason reaches it as `error=access_denied&error_description=...`). When the gateway
 * reactivates the user it unblocks them and removes the flag (`"scimGateway": null`), and this
 * Action lets them in again.
 *
 * Install it (Auth0 Dashboard):
 *   1. Actions → Library → Build custom (Create Action). Name "Deny deprovisioned users", trigger
 *      "Login / Post Login", the default runtime.
 *   2. Replace the editor's content with this file, then Deploy.
 *   3. Actions → Triggers → post-login: drag the Action into the flow (before Actions that issue
 *      tokens or call other systems) and Apply.
 * It needs no secrets and no npm modules.
 *
 * With the Auth0 Deploy CLI or Terraform, deploy this file as the Action's `code` with the
 * `post-login` trigger and bind it in the post-login flow.
 */

/** The app_metadata key the gateway's auth0 connector writes; keep it equal to the connector's. */
const FLAG_KEY = 'scimGateway';

/**
 * @param {import('./post-login').PostLoginEvent} event
 * @param {import('./post-login').PostLoginApi} api
 */
exports.onExecutePostLogin = async (event, api) => {
  const metadata = event.user.app_metadata;
  const flag = metadata && typeof metadata === 'object' ? metadata[FLAG_KEY] : undefined;
  if (flag && typeof flag === 'object' && /** @type {{ deprovisioned?: unknown }} */ (flag).deprovisioned === true) {
    api.access.deny('Your access has been removed by your organization. Contact your administrator if you think this is a mistake.');
  }
};
