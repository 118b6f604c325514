/**
 * The web console at /console: server-rendered pages and plain HTML forms (no script at all), signed
 * in through the company's OpenID Connect provider (or, under `npm start` with no provider, a marked
 * local sign-in). Every state-changing form carries the session's CSRF token; every action is
 * authorised here on the server, decisions through the same {@link decideAs} as every other channel.
 * See docs/console.md.
 */
import type { FastifyPluginAsync } from 'fastify';
import { findPolicy, listPolicies, type AccessPolicy } from '../../core/access/policies.js';
import { approvalsOf, createRequest, isEligible, listRequestsOf, RequestRefused, type AccessRequestView } from '../../core/access/requests.js';
import { listHoldings } from '../../core/provisioning/holdings.js';
import { decideAs } from '../access-decisions.js';
import { routeOwnPolicies } from '../plugins/security.js';
import adminDirectory from './admin-directory.js';
import { html, type SafeHtml } from './html.js';
import { accessPages } from './access-pages.js';
import { reviewPages } from './review-pages.js';
import { adminOperations } from './admin-operations.js';
import { consoleKit, emptyList, hours, onePage, pageNumber, pager, requestFields, STATUS_TEXT, UUID, type ConsoleOptions, type Form } from './kit.js';
import { clearCookie, LOGIN_COOKIE, PRE_CSRF_COOKIE, randomToken, readCookies, safeReturnPath, sameSecret, setCookie, type ConsoleSession } from './session.js';

export type { ConsoleOptions } from './kit.js';

const webConsole: FastifyPluginAsync<ConsoleOptions> = async (app, opts) => {
  const settings = app.config.console;
  // Before the kit's hooks and any route: every console route carries a `helmet` policy of its own.
  await routeOwnPolicies(app);
  const kit = consoleKit(app, opts);
  const { oidc, localSignIn, cookies, sessions, page, errorCard, signedIn, acting, userNames, redirectBase } = kit;
  accessPages(app, kit);
  reviewPages(app, kit);
  adminOperations(app, kit);

  // ------------------------------------------------------------------ sign-in

  app.get<{ Querystring: { returnTo?: string } }>('/', async (request, reply) => {
    const me = await sessions.get(request);
    const returnTo = safeReturnPath(request.query.returnTo);
    if (me) return reply.redirect(returnTo === '/console' ? '/console/catalogue' : returnTo, 303);
    const parts: SafeHtml[] = [];
    if (oidc) {
      parts.push(html`<div class="card"><p>Sign in with your company account to request access and decide requests.</p>
<p><a href="/console/login?returnTo=${encodeURIComponent(returnTo)}">Sign in with your company account</a></p></div>`);
    } else if (localSignIn) {
      const csrf = randomToken();
      setCookie(request, reply, PRE_CSRF_COOKIE, csrf, 600);
      const { rows } = await app.db.query<{ id: string; user_name: string }>('SELECT id, user_name FROM users WHERE deleted_at IS NULL AND active ORDER BY lower(user_name) LIMIT 500');
      parts.push(
        rows.length
          ? html`<div class="card local"><h2>Local sign-in (no identity provider configured)</h2>
<p>This gateway runs under <code>npm start</code> on its embedded database, so you may act as any directory user. It is refused as soon as CONSOLE_OIDC_ISSUER is set.</p>
<form method="post" action="/console/login/local"><input type="hidden" name="_csrf" value="${csrf}"><input type="hidden" name="returnTo" value="${returnTo}">
<label for="user">Directory user</label><select id="user" name="userId">${rows.map((r) => html`<option value="${r.id}">${r.user_name}</option>`)}</select>
<button type="submit">Sign in as this user</button></form></div>`
          : errorCard('There are no directory users yet. Provision users through SCIM first, then sign in as one of them.', html``),
      );
    } else {
      parts.push(errorCard('Sign-in is not configured. Set CONSOLE_OIDC_ISSUER, CONSOLE_OIDC_CLIENT_ID, CONSOLE_OIDC_CLIENT_SECRET and CONSOLE_SESSION_SECRET (docs/console.md).', html``));
    }
    return page(reply, undefined, 'Sign in', html`${parts}`);
  });

  app.get<{ Querystring: { returnTo?: string } }>('/login', async (request, reply) => {
    if (!oidc) return page(reply.code(404), undefined, 'Sign in', errorCard('No identity provider is configured.'));
    const start = await oidc.start(`${redirectBase(request)}/console/callback`);
    const state = JSON.stringify({ s: start.state, n: start.nonce, v: start.verifier, r: safeReturnPath(request.query.returnTo), e: Date.now() + 600_000 });
    setCookie(request, reply, LOGIN_COOKIE, cookies.sign(Buffer.from(state).toString('base64url')), 600);
    return reply.redirect(start.url, 303);
  });

  app.get('/callback', async (request, reply) => {
    if (!oidc) return page(reply.code(404), undefined, 'Sign in', errorCard('No identity provider is configured.'));
    const raw = cookies.unsign(readCookies(request)[LOGIN_COOKIE]);
    clearCookie(request, reply, LOGIN_COOKIE);
    let login: { s: string; n: string; v: string; r: string; e: number } | undefined;
    try {
      login = raw ? (JSON.parse(Buffer.from(raw, 'base64url').toString()) as typeof login) : undefined;
    } catch {
      login = undefined;
    }
    const again = html`<p><a href="/console">Sign in again</a></p>`;
    if (!login || login.e < Date.now()) return page(reply.code(400), undefined, 'Sign in', errorCard('This sign-in has expired or was started in another browser.', again));
    let claims: Record<string, unknown>;
    try {
      claims = await oidc.finish(new URL(request.url, redirectBase(request)), { state: login.s, nonce: login.n, verifier: login.v });
    } catch (err) {
      request.log.warn({ err: { name: (err as Error).name, message: (err as Error).message } }, 'console sign-in refused');
      return page(reply.code(400), undefined, 'Sign in', errorCard('The identity provider’s answer could not be verified.', again));
    }
    const value = claims[settings.userClaim];
    if (typeof value !== 'string' || value === '' || (settings.userClaim === 'email' && claims.email_verified === false)) {
      return page(reply.code(403), undefined, 'Sign in', errorCard(`Your identity provider did not send a usable ${settings.userClaim} claim.`, again));
    }
    const { rows } = await app.db.query<{ id: string }>(
      settings.userClaim === 'sub'
        ? 'SELECT id FROM users WHERE deleted_at IS NULL AND active AND external_id = $1 LIMIT 2'
        : `SELECT id FROM users WHERE deleted_at IS NULL AND active
            AND (lower(user_name) = lower($1)
                 OR EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(resource->'emails') = 'array' THEN resource->'emails' ELSE '[]'::jsonb END) e
                             WHERE lower(e->>'value') = lower($1)))
          LIMIT 2`,
      [value],
    );
    if (rows.length !== 1) return page(reply.code(403), undefined, 'Sign in', errorCard(`No single active directory user matches ${value}. Ask your administrator.`, again));
    await sessions.start(request, reply, rows[0]!.id, 'oidc');
    return reply.redirect(login.r === '/console' ? '/console/catalogue' : login.r, 303);
  });

  app.post<{ Body: Form }>('/login/local', async (request, reply) => {
    if (!localSignIn) return page(reply.code(403), undefined, 'Sign in', errorCard('Local sign-in is off: sign in with your identity provider.'));
    const form = (request.body ?? {});
    if (!sameSecret(form._csrf, readCookies(request)[PRE_CSRF_COOKIE])) return page(reply.code(403), undefined, 'Sign in', errorCard('This form has expired. Reload the page and try again.'));
    const { rows } = await app.db.query<{ id: string }>('SELECT id FROM users WHERE deleted_at IS NULL AND active AND id::text = $1', [form.userId ?? '']);
    if (!rows[0]) return page(reply.code(400), undefined, 'Sign in', errorCard('No such active directory user.'));
    clearCookie(request, reply, PRE_CSRF_COOKIE);
    await sessions.start(request, reply, rows[0].id, 'local');
    const to = safeReturnPath(form.returnTo);
    return reply.redirect(to === '/console' ? '/console/catalogue' : to, 303);
  });

  app.post('/logout', async (request, reply) => {
    const acted = await acting(request, reply);
    if (!acted) return reply;
    await sessions.end(request, reply);
    return page(reply, undefined, 'Signed out', html`<div class="card ok" role="status"><p>You are signed out.</p><p><a href="/console">Sign in again</a></p></div>`);
  });

  // ------------------------------------------------------------------ catalogue and my requests

  app.get('/catalogue', async (request, reply) => {
    const me = await signedIn(request, reply);
    if (!me) return reply;
    const policies = await listPolicies(app.db);
    const cards = await Promise.all(policies.map(async (p) => policyCard(p, await isEligible(app.db, app.scimRegistry, p, me.userId), me)));
    return page(reply, me, 'Request access', policies.length ? html`${cards}` : html`<div class="card"><p>Nothing can be requested yet: an administrator defines access policies (docs/access-requests.md).</p></div>`);
  });

  function policyCard(p: AccessPolicy, eligible: boolean, me: ConsoleSession): SafeHtml {
    const id = `p-${p.name}`;
    const max = p.durations.maxSeconds;
    return html`<section class="card" aria-labelledby="${id}"><h2 id="${id}">${p.displayName}</h2>
${p.description ? html`<p>${p.description}</p>` : ''}
<p>${p.stages.length} approval stage${p.stages.length === 1 ? '' : 's'}${p.stages.length ? html`: ${p.stages.map((s) => s.name).join(', ')}` : ''}. Default duration ${hours(p.durations.defaultSeconds)}${max ? html`, at most ${hours(max)}` : ''}.</p>
${eligible
  ? html`<form method="post" action="/console/requests"><input type="hidden" name="_csrf" value="${me.csrf}"><input type="hidden" name="policy" value="${p.name}">
<label for="${id}-hours">Duration in hours (empty: the default)</label><input id="${id}-hours" name="hours" type="number" min="1" ${max ? html`max="${Math.floor(max / 3600)}"` : ''}>
<label for="${id}-why">Justification${p.justificationRequired ? ' (required)' : ''}</label><textarea id="${id}-why" name="justification" rows="2" maxlength="4000" ${p.justificationRequired ? 'required' : ''}></textarea>
<button type="submit">Request ${p.displayName}</button></form>`
  : html`<p><em>You are not eligible to request this.</em></p>`}
</section>`;
  }

  app.post<{ Body: Form }>('/requests', async (request, reply) => {
    const acted = await acting(request, reply);
    if (!acted) return reply;
    const { me, form } = acted;
    const policy = form.policy ? await findPolicy(app.db, form.policy) : undefined;
    if (!policy) return page(reply.code(404), me, 'Request access', errorCard(`There is no access policy "${form.policy ?? ''}".`, html`<p><a href="/console/catalogue">Back to the catalogue</a></p>`));
    const fields = requestFields(form);
    if ('error' in fields) return page(reply.code(400), me, 'Request access', errorCard(fields.error, html`<p><a href="/console/catalogue">Back to the catalogue</a></p>`));
    let id: string;
    try {
      id = await createRequest(app.db, app.scimRegistry, {
        policy,
        requesterId: me.userId,
        createdBy: `console:${me.userName}`,
        ...fields,
      });
    } catch (err) {
      if (err instanceof RequestRefused) return page(reply.code(err.status), me, 'Request access', errorCard(err.message, html`<p><a href="/console/catalogue">Back to the catalogue</a></p>`));
      throw err;
    }
    app.outbox.kick();
    return reply.redirect(`/console/requests?created=${id}`, 303);
  });

  /** How many stages each request's policy (as the request keeps it) has; the workflow adds stages as it reaches them. */
  async function stageCounts(list: AccessRequestView[]): Promise<Map<string, number>> {
    const { rows } = await app.db.query<{ id: string; n: number }>(
      `SELECT id, CASE WHEN jsonb_typeof(policy->'stages') = 'array' THEN jsonb_array_length(policy->'stages') ELSE 0 END AS n FROM access_requests WHERE id = ANY ($1::uuid[])`,
      [list.map((r) => r.id)],
    );
    return new Map(rows.map((r) => [r.id, Number(r.n)]));
  }

  async function requestCard(r: AccessRequestView, names: Map<string, string>, totals: Map<string, number>, actions?: SafeHtml, extra?: SafeHtml): Promise<SafeHtml> {
    const total = Math.max(totals.get(r.id) ?? 0, r.stages.length);
    const current = r.status === 'pending' && total > 0 ? html` · stage ${Math.min(r.stage + 1, total)} of ${total}` : '';
    return html`<article class="card" aria-labelledby="r-${r.id}"><h2 id="r-${r.id}">${r.displayName}</h2>
<p>Status: <span class="status" data-status="${r.status}">${STATUS_TEXT[r.status] ?? r.status}</span>${current}${r.reason ? html` (${r.reason})` : ''}</p>
<dl>${extra ?? ''}${r.invitee ? html`<dt>Invitee</dt><dd>${r.invitee.displayName ? `${r.invitee.displayName} <${r.invitee.email}>` : r.invitee.email} (not in the directory yet: invited once approved)</dd>` : ''}<dt>Requested</dt><dd>${new Date(r.createdAt).toUTCString()}</dd><dt>Duration</dt><dd>${hours(r.durationSeconds)}</dd><dt>Justification</dt><dd>${r.justification ?? '—'}</dd></dl>
<ol>${r.stages.map(
      (s) => html`<li>${s.name}: ${s.status}${Object.keys(s.decisions).length
        ? html` — ${Object.entries(s.decisions).map(([who, d], i) => html`${i ? ', ' : ''}${names.get(who) ?? who} ${d === 'approve' ? 'approved' : 'rejected'}`)}`
        : ''}</li>`,
    )}</ol>${actions ?? ''}</article>`;
  }

  function deciders(list: AccessRequestView[]): string[] {
    return [...new Set(list.flatMap((r) => r.stages.flatMap((s) => Object.keys(s.decisions))))];
  }

  app.get<{ Querystring: { created?: string; cancelled?: string; page?: string } }>('/requests', async (request, reply) => {
    const me = await signedIn(request, reply);
    if (!me) return reply;
    const pageNo = pageNumber(request.query.page);
    const { items: mine, hasNext } = await onePage(pageNo, (limit, offset) => listRequestsOf(app.db, me.userId, limit, offset));
    const names = await userNames(deciders(mine));
    const created = mine.find((r) => r.id === request.query.created);
    const cancelled = mine.find((r) => r.id === request.query.cancelled);
    const notice = created
      ? html`<div class="card ok" role="status"><p>Your request for ${created.displayName} was sent to its approvers.</p></div>`
      : cancelled
        ? html`<div class="card ok" role="status"><p>Your request for ${cancelled.displayName} is cancelled.</p></div>`
        : '';
    const totals = await stageCounts(mine);
    const cards = await Promise.all(
      mine.map((r) =>
        requestCard(
          r,
          names,
          totals,
          r.status === 'pending'
            ? html`<form method="post" action="/console/requests/${r.id}/cancel"><input type="hidden" name="_csrf" value="${me.csrf}"><button type="submit" class="secondary">Cancel this request</button></form>`
            : r.status === 'fulfilled'
              ? html`<p>While it runs, extend or release it under <a href="/console/access">My access</a>.</p>`
              : undefined,
        ),
      ),
    );
    const empty = html`<p>You have made no requests. <a href="/console/catalogue">Request access</a>.</p>`;
    return page(reply, me, 'My requests', html`${notice}${mine.length ? cards : emptyList('/console/requests', pageNo, empty)}${pager('/console/requests', pageNo, hasNext)}`);
  });

  // ------------------------------------------------------------------ approvals

  app.get<{ Querystring: { decided?: string } }>('/inbox', async (request, reply) => {
    const me = await signedIn(request, reply);
    if (!me) return reply;
    const waiting = await approvalsOf(app.db, me.userId);
    const names = await userNames(deciders(waiting));
    const { rows: people } = await app.db.query<{ id: string; title: string | null; manager: string | null }>(
      `SELECT u.id, u.resource->>'title' AS title, m.user_name AS manager FROM users u
         LEFT JOIN users m ON m.id::text = u.resource->'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User'->'manager'->>'value'
        WHERE u.id = ANY ($1::uuid[])`,
      [waiting.map((r) => r.requesterId)],
    );
    const byId = new Map(people.map((p) => [p.id, p]));
    // What each requester holds already (granted, by rule or by request), for the approver to weigh.
    const held = new Map<string, string[]>();
    for (const requesterId of new Set(waiting.map((r) => r.requesterId))) {
      held.set(requesterId, (await listHoldings(app.db, { userId: requesterId, grantsOnly: true })).map((h) => `${h.connectorId}/${h.entitlement}`));
    }
    const totals = await stageCounts(waiting);
    const cards = await Promise.all(
      waiting.map((r) => {
        const who = byId.get(r.requesterId);
        const holds = held.get(r.requesterId) ?? [];
        const extra = html`<dt>Requester</dt><dd>${r.requester}</dd><dt>Title</dt><dd>${who?.title ?? '—'}</dd><dt>Manager</dt><dd>${who?.manager ?? '—'}</dd><dt>Current access</dt><dd>${holds.length ? holds.join(', ') : 'none'}</dd>`;
        const actions = html`<form method="post" action="/console/requests/${r.id}/decision"><input type="hidden" name="_csrf" value="${me.csrf}">
<label for="c-${r.id}">Comment (optional)</label><textarea id="c-${r.id}" name="comment" rows="2" maxlength="4000"></textarea>
<button type="submit" name="decision" value="approve">Approve</button> <button type="submit" name="decision" value="reject" class="secondary">Reject</button></form>`;
        return requestCard(r, names, totals, actions, extra);
      }),
    );
    const notice = request.query.decided ? html`<div class="card ok" role="status"><p>Your decision was recorded.</p></div>` : '';
    return page(reply, me, 'Approvals', html`${notice}${waiting.length ? cards : html`<div class="card"><p>Nothing is waiting for your decision.</p></div>`}`);
  });

  app.post<{ Params: { id: string }; Body: Form }>('/requests/:id/decision', async (request, reply) => {
    const acted = await acting(request, reply);
    if (!acted) return reply;
    const { me, form } = acted;
    const back = html`<p><a href="/console/inbox">Back to approvals</a></p>`;
    if (!UUID.test(request.params.id)) return page(reply.code(404), me, 'Approvals', errorCard('There is no such request.', back));
    if (form.decision !== 'approve' && form.decision !== 'reject') return page(reply.code(400), me, 'Approvals', errorCard('Choose approve or reject.', back));
    const comment = (form.comment ?? '').trim().slice(0, 4000);
    const outcome = await decideAs(app.db, () => app.temporal.client(), { userId: me.userId, userName: me.userName }, request.params.id, form.decision, comment || undefined);
    if (outcome.ok) {
      // An approval that completes the request wrote its grant: provisioning starts now.
      app.outbox.kick();
      return reply.redirect(`/console/inbox?decided=${request.params.id}`, 303);
    }
    return page(reply.code(outcome.status), me, 'Approvals', errorCard(outcome.status === 403 ? `You may not decide this request: ${outcome.message}.` : `The decision was not recorded: ${outcome.message}.`, back));
  });

  adminDirectory(app, kit);
};

export default webConsole;
