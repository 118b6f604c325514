/**
 * The administrators' operations pages of the console (docs/console.md): connectors and "test
 * connection", each connector's drift with a dry run and "reconcile now" (Temporal workflows, whose
 * page refreshes itself until the run ends), and API tokens (list, create, rotate, revoke; a new
 * secret is shown once). Every page is for administrators only and every form is CSRF-checked
 * (kit.admin, kit.adminActing); the work is done by the same functions as the admin API's.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import {
  issueToken,
  listActiveTokens,
  revokeNamedToken,
  rotateToken,
  TOKEN_NAME_MAX,
  TOKEN_NAME_PATTERN,
  TOKEN_SCOPES,
  TokenNameTaken,
  tokenUserId,
  type TokenAdmin,
  type TokenIdentity,
  type TokenScope,
} from '../../core/auth/tokens.js';
import { accountCounts, listConnectors } from '../../core/provisioning/connectors.js';
import { latestDrift, latestReconcileRun, latestReconcileRuns, type ReconcileRunView } from '../../core/provisioning/drift.js';
import { reconcileRunState, startReconcile, testConnector } from '../connector-operations.js';
import { workflowUiUrl } from '../temporal.js';
import { html, type SafeHtml } from './html.js';
import { UUID, type ConsoleKit } from './kit.js';
import type { ConsoleSession } from './session.js';

/** A connector id as the admin API accepts it. */
const CONNECTOR_ID = /^[a-z0-9][a-z0-9-]{0,62}$/;
const TOKEN_NAME = new RegExp(TOKEN_NAME_PATTERN);

/** While a run is going, its page asks the browser to load it again this often (seconds). */
const REFRESH_SECONDS = 3;

const SCOPE_TEXT: Record<TokenScope, string> = {
  'scim:read': 'read users and groups through SCIM',
  'scim:write': 'create, change and delete users and groups through SCIM (an identity provider’s provisioning)',
  admin: 'the admin API: connectors, entitlements, rules, grants, tokens, audit',
  'metrics:read': 'scrape /metrics',
  requests: 'make access requests and decisions as the token’s own user',
  'requests:act-as': 'make access requests and decisions as any user the caller names (a trusted front end)',
};

const DRIFT_KIND: Record<string, string> = {
  missingAccount: 'account missing in the target',
  orphanAccount: 'account no user of ours owns',
  missingMembership: 'membership missing in the target',
  unexpectedMembership: 'membership not granted by us',
};

function when(d: Date | string | null | undefined): string {
  return d ? new Date(d).toUTCString() : '—';
}

export function adminOperations(app: FastifyInstance, kit: ConsoleKit): void {
  const { page, errorCard, admin, adminActing, userNames } = kit;
  const toConnectors = html`<p><a href="/console/admin/connectors">Back to the connectors</a></p>`;
  const toTokens = html`<p><a href="/console/admin/tokens">Back to the tokens</a></p>`;
  const by = (me: ConsoleSession): TokenAdmin => ({ actor: `console:${me.userName}`, reason: 'console' });

  /** The connector's mode (enforce, monitor); undefined when there is no such connector. */
  async function connectorMode(id: string): Promise<string | undefined> {
    if (!CONNECTOR_ID.test(id)) return undefined;
    const { rows } = await app.db.query<{ mode: string }>('SELECT mode FROM connectors WHERE id = $1', [id]);
    return rows[0]?.mode;
  }

  function noConnector(reply: FastifyReply, me: ConsoleSession, id: string): FastifyReply {
    return page(reply.code(404), me, 'No such connector', errorCard(`There is no connector "${id}".`, toConnectors));
  }

  function runLine(run: ReconcileRunView | undefined): SafeHtml {
    if (!run) return html`never`;
    const kind = run.dryRun ? 'dry run' : `${run.mode} mode`;
    if (!run.finishedAt) return html`${when(run.startedAt)} (${kind}), still running`;
    return html`${when(run.finishedAt)} (${kind}): ${run.driftFound ?? 0} difference${run.driftFound === 1 ? '' : 's'} found`;
  }

  // ------------------------------------------------------------------ connectors

  app.get('/admin/connectors', async (request, reply) => {
    const me = await admin(request, reply);
    if (!me) return reply;
    const connectors = await listConnectors(app.db);
    if (connectors.length === 0) {
      return page(
        reply,
        me,
        'Connectors',
        html`<div class="card"><p>No connectors are configured yet. Add one with the admin API (<code>PUT /api/connectors/{id}</code>) or the declarative configuration file; see docs/provisioning.md.</p></div>`,
      );
    }
    const runs = await latestReconcileRuns(app.db);
    const accounts = await accountCounts(app.db);
    const cards = connectors.map((c) => {
      const h = `c-${c.id}`;
      return html`<section class="card" aria-labelledby="${h}"><h2 id="${h}">${c.id}</h2>
<dl><dt>Type</dt><dd>${c.type}</dd>
<dt>State</dt><dd><span class="status" data-state="${c.enabled ? 'enabled' : 'disabled'}">${c.enabled ? 'enabled' : 'disabled'}</span>, ${c.mode === 'monitor' ? 'monitor mode (reports drift, changes nothing)' : 'enforce mode'}</dd>
<dt>Accounts</dt><dd>${accounts.has(c.id) ? [...accounts.get(c.id)!].map(([state, n]) => `${n} ${state}`).join(', ') : 'none yet'}</dd>
<dt>Deprovisioning</dt><dd>${c.deprovision === 'delete' ? 'delete the account' : 'disable the account'}</dd>
<dt>Reconciliation</dt><dd>${c.reconcileEveryMinutes ? `every ${c.reconcileEveryMinutes} min` : 'on demand only'}</dd>
<dt>Last reconciliation</dt><dd>${runLine(runs.get(c.id))}</dd></dl>
<form method="post" action="/console/admin/connectors/${c.id}/test"><input type="hidden" name="_csrf" value="${me.csrf}">
<button type="submit">Test connection to ${c.id}</button> <a href="/console/admin/connectors/${c.id}/drift">Drift and reconciliation of ${c.id}</a></form></section>`;
    });
    return page(reply, me, 'Connectors', html`${cards}`);
  });

  app.post<{ Params: { id: string } }>('/admin/connectors/:id/test', async (request, reply) => {
    const acted = await adminActing(request, reply);
    if (!acted) return reply;
    const { me } = acted;
    const { id } = request.params;
    if (!(await connectorMode(id))) return noConnector(reply, me, id);
    const tested = await testConnector(app, id);
    const title = `Test connection: ${id}`;
    if (!tested.ok) return page(reply.code(tested.status), me, title, errorCard(`The test could not be run: ${tested.message}.`, toConnectors));
    const { result } = tested;
    if (result.ok) {
      return page(reply, me, title, html`<div class="card ok" role="status"><p><span class="status" data-result="ok">Connection works.</span> ${id} reached its target with its configuration and credentials.</p>${toConnectors}</div>`);
    }
    const next =
      result.kind === 'permanent'
        ? 'Fix the connector’s configuration or the permissions of its credentials in the target, then test again.'
        : 'This may pass by itself (the target is busy or unreachable): test again in a moment.';
    return page(
      reply,
      me,
      title,
      html`<div class="card error" role="alert"><p><span class="status" data-result="failed">The test failed.</span> The connector said: ${result.error ?? 'no reason given'}</p><p>${next}</p>${toConnectors}</div>`,
    );
  });

  // ------------------------------------------------------------------ drift and reconciliation

  function reconcileForms(me: ConsoleSession, id: string, mode: string): SafeHtml {
    return html`<section class="card" aria-labelledby="run-${id}"><h2 id="run-${id}">Reconcile ${id}</h2>
<p>A dry run reads the target and reports the drift without changing anything. Reconciling now also fixes it${mode === 'monitor' ? html` — but ${id} is in monitor mode, so it only reports too` : ''}.</p>
<form method="post" action="/console/admin/connectors/${id}/reconcile"><input type="hidden" name="_csrf" value="${me.csrf}">
<button type="submit" name="run" value="dry-run" class="secondary">Dry run (report only)</button> <button type="submit" name="run" value="enforce">Reconcile now</button></form></section>`;
  }

  app.get<{ Params: { id: string } }>('/admin/connectors/:id/drift', async (request, reply) => {
    const me = await admin(request, reply);
    if (!me) return reply;
    const { id } = request.params;
    const mode = await connectorMode(id);
    if (!mode) return noConnector(reply, me, id);
    const forms = reconcileForms(me, id, mode);
    const title = `Drift: ${id}`;
    const latest = await latestDrift(app.db, id);
    if (!latest) {
      return page(reply, me, title, html`<div class="card"><p>${id} has not been reconciled yet. Start a dry run below to see its drift without changing anything.</p></div>${forms}${toConnectors}`);
    }
    const { run, drift } = latest;
    const ui = run.workflowId ? workflowUiUrl(app.config.temporalUiUrl, app.config.temporalNamespace, run.workflowId) : undefined;
    const summary = html`<section class="card" aria-labelledby="latest"><h2 id="latest">Latest reconciliation</h2>
<dl><dt>Kind</dt><dd>${run.dryRun ? 'dry run (report only)' : `${run.mode} mode`}</dd><dt>Started</dt><dd>${when(run.startedAt)}</dd>
<dt>Finished</dt><dd>${run.finishedAt ? when(run.finishedAt) : 'still running: reload this page later'}</dd>
<dt>Read from the target</dt><dd>${run.accountsSeen ?? 0} accounts, ${run.grantsSeen ?? 0} memberships, in ${run.apiCalls ?? 0} calls</dd>
<dt>Differences</dt><dd>${run.driftFound ?? drift.length}</dd></dl>
${ui ? html`<p><a href="${ui}">The workflow in the Temporal UI</a></p>` : ''}</section>`;
    const list = drift.length
      ? html`<section class="card" aria-labelledby="found"><h2 id="found">What it found${drift.length >= 1000 ? ' (the first 1000)' : ''}</h2>
<table><thead><tr><th scope="col">Kind</th><th scope="col">Found</th><th scope="col">Done</th></tr></thead><tbody>${drift.map(
          (d) => html`<tr data-kind="${d.kind}" data-action="${d.action}"><td>${DRIFT_KIND[d.kind] ?? d.kind}</td><td>${d.found}</td><td>${d.done}</td></tr>`,
        )}</tbody></table></section>`
      : html`<div class="card ok" role="status"><p>${run.finishedAt ? 'No drift: the target matched the directory.' : 'No drift found so far.'}</p></div>`;
    return page(reply, me, title, html`${summary}${list}${forms}${toConnectors}`);
  });

  app.post<{ Params: { id: string } }>('/admin/connectors/:id/reconcile', async (request, reply) => {
    const acted = await adminActing(request, reply);
    if (!acted) return reply;
    const { me, form } = acted;
    const { id } = request.params;
    if (!(await connectorMode(id))) return noConnector(reply, me, id);
    const back = html`<p><a href="/console/admin/connectors/${id}/drift">Back to the drift of ${id}</a></p>`;
    if (form.run !== 'dry-run' && form.run !== 'enforce') return page(reply.code(400), me, `Reconcile ${id}`, errorCard('Choose a dry run or reconcile now.', back));
    const started = await startReconcile(app, id, form.run === 'dry-run');
    if (!started.ok) {
      const message = started.status === 409 ? `A reconciliation of ${id} is already running. Wait for it to finish, then look at its drift.` : `The reconciliation was not started: ${started.message}.`;
      return page(reply.code(started.status), me, `Reconcile ${id}`, errorCard(message, back));
    }
    return reply.redirect(`/console/admin/connectors/${id}/runs/${started.handle.firstExecutionRunId}`, 303);
  });

  app.get<{ Params: { id: string; runId: string } }>('/admin/connectors/:id/runs/:runId', async (request, reply) => {
    const me = await admin(request, reply);
    if (!me) return reply;
    const { id, runId } = request.params;
    if (!(await connectorMode(id))) return noConnector(reply, me, id);
    const back = html`<p><a href="/console/admin/connectors/${id}/drift">The drift of ${id}</a> · <a href="/console/admin/connectors">All connectors</a></p>`;
    const state = UUID.test(runId) ? await reconcileRunState(app, id, runId) : undefined;
    const title = `Reconciliation of ${id}`;
    if (!state) return page(reply.code(404), me, title, errorCard(`Temporal knows no such reconciliation run of ${id}. Start one from the drift page.`, back));
    if ('ok' in state) return page(reply.code(state.status), me, title, errorCard(`The run’s state cannot be read now: ${state.message}.`, back));
    const ui = workflowUiUrl(app.config.temporalUiUrl, app.config.temporalNamespace, state.workflowId, state.runId);
    const link = ui ? html`<p><a href="${ui}">This run in the Temporal UI</a></p>` : '';
    const kind = state.dryRun ? 'Dry run (report only)' : 'Reconcile now';
    const head = html`<dl><dt>Kind</dt><dd>${kind}</dd><dt>Started</dt><dd>${when(state.startedAt)}</dd>${state.closedAt ? html`<dt>Ended</dt><dd>${when(state.closedAt)}</dd>` : ''}</dl>`;

    if (state.status === 'running') {
      const run = await latestReconcileRun(app.db, id);
      const progress =
        run && !run.finishedAt
          ? html`<p>So far: ${run.accountsSeen ?? 0} accounts and ${run.grantsSeen ?? 0} memberships read in ${run.apiCalls ?? 0} calls.</p>`
          : html`<p>Opening the run…</p>`;
      // The browser loads the page again until the run ends (a Refresh header: no script needed).
      reply.header('refresh', String(REFRESH_SECONDS));
      return page(
        reply,
        me,
        title,
        html`<div class="card" role="status"><p>Status: <span class="status" data-run="running">running</span></p>${head}${progress}
<p>This page reloads every ${REFRESH_SECONDS} seconds until the run ends. <a href="/console/admin/connectors/${id}/runs/${runId}">Reload now</a></p>${link}</div>${back}`,
      );
    }
    if (state.status !== 'completed' || !state.summary) {
      return page(
        reply,
        me,
        title,
        html`<div class="card error" role="alert"><p>Status: <span class="status" data-run="${state.status}">${state.status === 'failed' ? 'failed' : `ended (${state.status})`}</span></p>${head}
<p>${state.failure ?? 'The run did not complete.'}</p><p>Test the connection to ${id}, fix what it reports, and start the run again.</p>${link}</div>${back}`,
      );
    }
    const s = state.summary;
    const total = s.drift.reduce((n, d) => n + d.count, 0);
    const counts = s.drift.length
      ? html`<table><thead><tr><th scope="col">Kind</th><th scope="col">Done</th><th scope="col">Count</th></tr></thead><tbody>${s.drift.map(
          (d) => html`<tr data-kind="${d.kind}" data-action="${d.action}"><td>${DRIFT_KIND[d.kind] ?? d.kind}</td><td>${d.action}</td><td>${d.count}</td></tr>`,
        )}</tbody></table>`
      : '';
    const sample = s.sample.length ? html`<ul>${s.sample.map((d) => html`<li>${d.found}: ${d.done}</li>`)}</ul>${total > s.sample.length ? html`<p>… and ${total - s.sample.length} more on the drift page.</p>` : ''}` : '';
    return page(
      reply,
      me,
      title,
      html`<div class="card ok" role="status"><p>Status: <span class="status" data-run="completed">finished</span>. ${total === 0 ? 'No drift: the target matched the directory.' : `${total} difference${total === 1 ? '' : 's'} found${s.dryRun ? ', nothing changed (dry run)' : s.mode === 'monitor' ? ', nothing changed (monitor mode)' : ''}.`}</p>${head}
<p>Read ${s.accountsSeen} accounts and ${s.grantsSeen} memberships in ${s.apiCalls} calls.</p>${counts}${sample}${link}</div>${back}`,
    );
  });

  // ------------------------------------------------------------------ tokens

  function scopeBoxes(): SafeHtml {
    return html`<fieldset><legend>Scopes (at least one)</legend>${TOKEN_SCOPES.map(
      (s) => html`<div><input type="checkbox" id="scope-${s}" name="scope.${s}" value="on"> <label for="scope-${s}" class="inline">${s}</label>: ${SCOPE_TEXT[s]}</div>`,
    )}</fieldset>`;
  }

  /** The answer page of a new or rotated token: its secret, this once. */
  function shownOnce(reply: FastifyReply, me: ConsoleSession, title: string, what: string, issued: { identity: TokenIdentity; token: string }): FastifyReply {
    return page(
      reply,
      me,
      title,
      html`<div class="card ok" role="status"><p>${what}</p>
<dl><dt>Name</dt><dd>${issued.identity.name}</dd><dt>Scopes</dt><dd>${issued.identity.scopes.join(', ')}</dd></dl>
<label for="secret">The token (copy it now: it is shown only this once and cannot be shown again)</label>
<input id="secret" type="text" readonly size="60" value="${issued.token}" data-token>
<p>Send it as <code>Authorization: Bearer …</code>. If it is lost, rotate the token to get a new one.</p>${toTokens}</div>`,
    );
  }

  app.get<{ Querystring: { revoked?: string } }>('/admin/tokens', async (request, reply) => {
    const me = await admin(request, reply);
    if (!me) return reply;
    const tokens = await listActiveTokens(app.db);
    const owners = await userNames(tokens.flatMap((t) => (t.userId ? [t.userId] : [])));
    const revoked = typeof request.query.revoked === 'string' && TOKEN_NAME.test(request.query.revoked) ? request.query.revoked : undefined;
    const notice = revoked ? html`<div class="card ok" role="status"><p>Token ${revoked} is revoked: it no longer works.</p></div>` : '';
    const list = tokens.length
      ? html`<section class="card" aria-labelledby="active"><h2 id="active">Active tokens</h2>
<table><thead><tr><th scope="col">Name</th><th scope="col">Scopes</th><th scope="col">For user</th><th scope="col">Created</th><th scope="col">Last used</th><th scope="col">Actions</th></tr></thead><tbody>${tokens.map(
          (t) => html`<tr data-token-name="${t.name}"><td>${t.name}</td><td>${t.scopes.join(', ')}</td><td>${t.userId ? (owners.get(t.userId) ?? t.userId) : '—'}</td><td>${when(t.createdAt)}</td><td>${t.lastUsedAt ? when(t.lastUsedAt) : 'never'}</td>
<td><form method="post" action="/console/admin/tokens/rotate"><input type="hidden" name="_csrf" value="${me.csrf}"><input type="hidden" name="name" value="${t.name}"><button type="submit" class="secondary">Rotate ${t.name}</button></form>
<form method="post" action="/console/admin/tokens/revoke"><input type="hidden" name="_csrf" value="${me.csrf}"><input type="hidden" name="name" value="${t.name}"><button type="submit" class="secondary">Revoke ${t.name}</button></form></td></tr>`,
        )}</tbody></table>
<p>Rotating revokes the token and issues a new secret with the same name, scopes and user; revoking stops it at once.</p></section>`
      : html`<div class="card"><p>There are no active tokens. Create one below for each client of the gateway (an identity provider’s SCIM provisioning, a script, a metrics scraper).</p></div>`;
    const create = html`<section class="card" aria-labelledby="create"><h2 id="create">Create a token</h2>
<form method="post" action="/console/admin/tokens"><input type="hidden" name="_csrf" value="${me.csrf}">
<label for="token-name">Name (letters, digits and . _ : -)</label><input id="token-name" name="name" required maxlength="${TOKEN_NAME_MAX}" pattern="[A-Za-z0-9._:\\-]+">
${scopeBoxes()}
<label for="token-user">For directory user (optional: userName of the only person a personal token acts as)</label><input id="token-user" name="user">
<button type="submit">Create token</button></form></section>`;
    return page(reply, me, 'API tokens', html`${notice}${list}${create}`);
  });

  app.post('/admin/tokens', async (request, reply) => {
    const acted = await adminActing(request, reply);
    if (!acted) return reply;
    const { me, form } = acted;
    const title = 'Create a token';
    const name = (form.name ?? '').trim();
    if (!name || name.length > TOKEN_NAME_MAX || !TOKEN_NAME.test(name)) {
      return page(reply.code(400), me, title, errorCard(`Give the token a name of at most ${TOKEN_NAME_MAX} letters, digits and . _ : - (no spaces).`, toTokens));
    }
    const scopes = TOKEN_SCOPES.filter((s) => form[`scope.${s}`] === 'on');
    if (scopes.length === 0) return page(reply.code(400), me, title, errorCard('Choose at least one scope.', toTokens));
    const user = (form.user ?? '').trim();
    let userId: string | undefined;
    if (user) {
      userId = await tokenUserId(app.db, user);
      if (!userId) return page(reply.code(400), me, title, errorCard(`There is no directory user ${user}. Leave the field empty for a token of no person.`, toTokens));
    }
    try {
      const issued = await issueToken(app.db, by(me), { name, scopes, userId });
      return shownOnce(reply, me, 'Token created', `Token ${name} is created.`, issued);
    } catch (err) {
      if (err instanceof TokenNameTaken) return page(reply.code(409), me, title, errorCard(`An active token is already called ${name}. Choose another name, or rotate that token.`, toTokens));
      throw err;
    }
  });

  app.post('/admin/tokens/rotate', async (request, reply) => {
    const acted = await adminActing(request, reply);
    if (!acted) return reply;
    const { me, form } = acted;
    const name = form.name ?? '';
    const rotated = await rotateToken(app.db, by(me), name);
    if (!rotated) return page(reply.code(404), me, 'Rotate a token', errorCard(`There is no active token called ${name}.`, toTokens));
    app.tokens.forget(rotated.revokedDigest);
    return shownOnce(reply, me, 'Token rotated', `Token ${name} is rotated: the old secret no longer works, this new one does.`, rotated);
  });

  app.post('/admin/tokens/revoke', async (request, reply) => {
    const acted = await adminActing(request, reply);
    if (!acted) return reply;
    const { me, form } = acted;
    const name = form.name ?? '';
    const digest = await revokeNamedToken(app.db, by(me), name);
    if (!digest) return page(reply.code(404), me, 'Revoke a token', errorCard(`There is no active token called ${name}.`, toTokens));
    app.tokens.forget(digest);
    return reply.redirect(`/console/admin/tokens?revoked=${encodeURIComponent(name)}`, 303);
  });
}
