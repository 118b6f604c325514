/**
 * The first-login status page: where the post-login Action sends a user whose accounts are not
 * ready yet (core/logins/). The page shows each target turning from pending to ready or failed, live
 * over Server-Sent Events, and when all is settled goes back to Auth0's /continue with a signed
 * continue token that the Action checks in onContinuePostLogin.
 *
 * - GET /login-status?session=<token>&state=<Auth0's state>: the page (works without script: it
 *   renders the current state; the script keeps it live).
 * - GET /login-status/events?session=…&state=…: the event stream: `status` events with the targets,
 *   then one `done` event with the continue URL, or `expired` when the session token runs out.
 *
 * The session token is short-lived and signed (core/logins/tokens.ts); it names the user, the Auth0
 * host to continue at and the failure policy, so nothing on the page can redirect elsewhere.
 */
import type { FastifyReply } from 'fastify';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { createSecretResolver, type SecretResolver } from '../../connectors/index.js';
import { getSource } from '../../core/sources/import.js';
import { parseAuth0SourceConfig } from '../../core/sources/auth0.js';
import { loginStatus, type LoginStatus } from '../../core/logins/status.js';
import { CONTINUE_TTL_SECONDS, peekClaims, sessionKey, signToken, verifyToken } from '../../core/logins/tokens.js';
import { ProvisioningWatcher } from '../../core/logins/watcher.js';
import { openEventStream } from '../event-stream.js';
import { sendApiError as fail } from './api/errors.js';
import { apiErrors } from './schemas.js';

export interface LoginSession {
  src: string;
  uid: string;
  sub: string;
  host: string;
  pol: 'deny' | 'continue';
  exp: number;
}

const PageQuery = Type.Object({ session: Type.String({ minLength: 1, maxLength: 4096 }), state: Type.Optional(Type.String({ maxLength: 4096 })) });

/** Errors of both routes, as JSON in the API's error shape. */
const SESSION_ERRORS = { 400: 'session missing or malformed (the events also need state)', 401: 'the session token has expired or is not valid' };

const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function renderTargets(status: LoginStatus): string {
  if (status.targets.length === 0) return '<li class="pending">Setting up your access…</li>';
  return status.targets
    .map((t) => `<li class="${t.state}" data-target="${escapeHtml(t.target)}"><span class="name">${escapeHtml(t.target)}</span> <span class="state">${t.state}</span>${t.reason ? ` <span class="reason">${escapeHtml(t.reason)}</span>` : ''}</li>`)
    .join('');
}

const SCRIPT = `'use strict';
(function () {
  var params = new URLSearchParams(location.search);
  var list = document.getElementById('targets');
  var heading = document.getElementById('heading');
  var go = document.getElementById('continue');
  function render(status) {
    list.textContent = '';
    if (status.targets.length === 0) {
      var li = document.createElement('li'); li.className = 'pending'; li.textContent = 'Setting up your access…'; list.appendChild(li);
    }
    status.targets.forEach(function (t) {
      var li = document.createElement('li');
      li.className = t.state; li.setAttribute('data-target', t.target);
      var name = document.createElement('span'); name.className = 'name'; name.textContent = t.target;
      var state = document.createElement('span'); state.className = 'state'; state.textContent = t.state;
      li.appendChild(name); li.appendChild(document.createTextNode(' ')); li.appendChild(state);
      if (t.reason) { var r = document.createElement('span'); r.className = 'reason'; r.textContent = ' ' + t.reason; li.appendChild(r); }
      list.appendChild(li);
    });
  }
  var q = 'session=' + encodeURIComponent(params.get('session') || '') + '&state=' + encodeURIComponent(params.get('state') || '');
  var events = new EventSource('/login-status/events?' + q);
  events.addEventListener('status', function (e) { render(JSON.parse(e.data)); });
  events.addEventListener('done', function (e) {
    events.close();
    var done = JSON.parse(e.data);
    render(done);
    document.body.setAttribute('data-state', done.state);
    go.href = done.continueUrl; go.hidden = false;
    if (done.state === 'ready') { heading.textContent = 'Your accounts are ready. Signing you in…'; location.assign(done.continueUrl); }
    else { heading.textContent = done.allowed ? 'Some accounts could not be set up. You can continue.' : 'Your accounts could not be set up.'; }
  });
  events.addEventListener('expired', function () { events.close(); heading.textContent = 'This page has expired. Please sign in again.'; });
})();
`;

const STYLE = `body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;color:#222}
li{list-style:none;padding:.4rem 0}.state{font-weight:600}.pending .state{color:#8a6d00}.ready .state{color:#1a7f37}.failed .state{color:#b42318}.reason{color:#555;display:block;font-size:.9em}
a#continue{display:inline-block;margin-top:1rem}`;

export interface LoginStatusOptions {
  secret?: SecretResolver;
}

const loginStatusRoutes: FastifyPluginAsyncTypebox<LoginStatusOptions> = async (app, opts) => {
  const secret = opts.secret ?? createSecretResolver();
  const max = (app.db as { options?: { max?: number } }).options?.max ?? 1;
  const watcher = new ProvisioningWatcher(app.db, { listen: max > 1, onError: (err) => app.log.warn({ err: err.message }, 'login status: LISTEN unavailable, polling') });
  app.addHook('onClose', async () => await watcher.close());

  /** The verified session, or undefined after answering 401/404. */
  async function session(token: string, reply: FastifyReply): Promise<{ claims: LoginSession; actionSecret: string } | undefined> {
    const src = peekClaims(token)?.src;
    const row = typeof src === 'string' ? await getSource(app.db, src) : undefined;
    const ref = row ? parseAuth0SourceConfig(row.config).actionSecret : undefined;
    const actionSecret = ref ? await secret(ref) : undefined;
    const claims = actionSecret ? verifyToken(sessionKey(actionSecret), token) : undefined;
    if (!claims || claims.typ !== 'login-session' || claims.src !== src) {
      await fail(reply, 401, 'this sign-in page has expired or its link is not valid; please sign in again');
      return undefined;
    }
    return { claims: claims as unknown as LoginSession, actionSecret: actionSecret! };
  }

  function continueUrl(s: { claims: LoginSession; actionSecret: string }, state: string, status: LoginStatus): { url: string; allowed: boolean } {
    const allowed = status.state === 'ready' || s.claims.pol === 'continue';
    const token = signToken(s.actionSecret, {
      typ: 'login-continue',
      sub: s.claims.sub,
      state,
      result: status.state,
      allow: allowed,
      failed: status.targets.filter((t) => t.state === 'failed').map((t) => ({ target: t.target, reason: t.reason ?? '' })),
      iat: Math.floor(Date.now() / 1000),
      exp: Math.floor(Date.now() / 1000) + CONTINUE_TTL_SECONDS,
    });
    const url = new URL(`https://${s.claims.host}/continue`);
    url.searchParams.set('state', state);
    url.searchParams.set('gateway_token', token);
    return { url: url.toString(), allowed };
  }

  app.get('/login-status/app.js', { schema: { hide: true } }, async (_request, reply) =>
    reply.header('content-type', 'text/javascript; charset=utf-8').header('cache-control', 'no-cache').send(SCRIPT),
  );
  app.get('/login-status/style.css', { schema: { hide: true } }, async (_request, reply) => reply.header('content-type', 'text/css; charset=utf-8').send(STYLE));

  app.get(
    '/login-status',
    {
      schema: {
        tags: ['auth0'],
        summary: 'First-login status page (opened by the post-login Action)',
        querystring: PageQuery,
        response: {
          200: {
            description: "the page: each target's state, kept live by its script over /login-status/events",
            content: { 'text/html': { schema: Type.String({ description: 'an HTML document' }) } },
          },
          ...apiErrors([400, 401], SESSION_ERRORS, false),
        },
      },
    },
    async (request, reply) => {
      const s = await session(request.query.session, reply);
      if (!s) return reply;
      const status = await loginStatus(app.db, s.claims.uid);
      const page = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="no-referrer"><title>Setting up your accounts</title><link rel="stylesheet" href="/login-status/style.css"></head>
<body data-state="${status.state}"><h1 id="heading">Setting up your accounts…</h1><ul id="targets">${renderTargets(status)}</ul>
<a id="continue" hidden>Continue</a><script src="/login-status/app.js"></script></body></html>`;
      return reply.header('content-security-policy', CSP).header('cache-control', 'no-store').type('text/html; charset=utf-8').send(page);
    },
  );

  app.get(
    '/login-status/events',
    {
      schema: {
        tags: ['auth0'],
        summary: 'First-login status as Server-Sent Events: status…, then done (or expired)',
        querystring: PageQuery,
        response: {
          200: {
            description: 'an open event stream until the provisioning settles or the session expires',
            content: {
              'text/event-stream': {
                schema: Type.String({
                  description:
                    '`status` events (data: {state, targets: [{target, state, reason?}]}) on each change, then one `done` event (the status with continueUrl and allowed) or `expired` ({}); comment lines keep the connection alive',
                }),
              },
            },
          },
          ...apiErrors([400, 401], SESSION_ERRORS, false),
        },
      },
    },
    async (request, reply) => {
      const s = await session(request.query.session, reply);
      if (!s) return reply;
      const state = request.query.state ?? '';
      if (!state) return fail(reply, 400, 'state (the parameter Auth0 adds to the redirect) is required');
      const stream = openEventStream(reply);
      let last = '';
      const evaluate = stream.evaluator(
        async () => {
          const status = await loginStatus(app.db, s.claims.uid);
          const json = JSON.stringify(status);
          if (json !== last) {
            last = json;
            stream.send('status', json, true);
          }
          if (status.state !== 'pending') {
            const { url, allowed } = continueUrl(s, state, status);
            stream.send('done', { ...status, continueUrl: url, allowed });
            stream.end();
          }
        },
        (err) => request.log.error({ err: err.message }, 'login status: evaluation failed'),
      );
      const expiry = setTimeout(() => {
        stream.send('expired', {});
        stream.end();
      }, Math.max(0, s.claims.exp * 1000 - Date.now()));
      stream.onEnd(() => clearTimeout(expiry));
      stream.onEnd(await watcher.subscribe(s.claims.uid, () => void evaluate()));
      await evaluate();
    },
  );
};

export default loginStatusRoutes;
