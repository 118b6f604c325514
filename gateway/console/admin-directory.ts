/**
 * The administrators' directory pages of the web console (docs/console.md), all read-only and all
 * for administrators only (kit.admin: a non-administrator gets 403 on every URL here):
 *
 * - Users (`/console/admin/users`): search by userName, display name or email (the SCIM filter
 *   `co` over the directory, 50 a page); each user's page shows their provisioning per target
 *   (core/provisioning/status.ts), live: the page is complete without JavaScript, and a small
 *   script of the gateway's own (`/console/admin/live-status.js`, allowed by this answer's CSP
 *   nonce) keeps the table current from `/console/admin/users/:id/status`, a Server-Sent Events
 *   stream woken by PostgreSQL LISTEN/NOTIFY (core/logins/watcher.ts). The user's userSync workflow
 *   is linked in the Temporal UI when TEMPORAL_UI_URL is set.
 * - Who has what (`/console/admin/access`, `.csv`): every user × entitlement held and why
 *   (core/provisioning/holdings.ts, as `GET /api/grants` reads it), filtered and paged, and as CSV
 *   that spreadsheets open as text.
 * - Audit log (`/console/admin/audit`): the events newest first, filtered as `GET /api/audit`
 *   filters them, and the hash-chain verification of `GET /api/audit/verify`.
 */
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { auditFilterOf, listAuditEventsNewestFirst, verifyAuditChain, type AuditEvent, type AuditFilterQuery } from '../../core/audit/chain.js';
import type { ListResult, StoredResource } from '../../core/directory/store.js';
import { ProvisioningWatcher } from '../../core/logins/watcher.js';
import { describeWhy, holdingsCsv, listHoldings, resolveEntitlement, resolveUser, type Holding } from '../../core/provisioning/holdings.js';
import { provisioningStatus, type ConnectorStatus, type ProvisioningStatus } from '../../core/provisioning/status.js';
import { ScimError } from '../../core/scim/errors.js';
import { parseFilter } from '../../core/scim/filter/index.js';
import { userSyncWorkflowId } from '../../workflows/client.js';
import { openEventStream } from '../event-stream.js';
import { workflowUiUrl } from '../temporal.js';
import { html, SafeHtml } from './html.js';
import { CONSOLE_LIVE_HELMET, UUID, type ConsoleKit } from './kit.js';
import type { ConsoleSession } from './session.js';

/** Rows per page on every list here. */
export const PAGE_SIZE = 50;
const MAX_SEARCH = 200;

/** Each provisioning state in words, for the page and (as data) for its script. */
export const STATE_TEXT: Record<ConnectorStatus['state'], string> = {
  pending: 'Pending',
  provisioned: 'Provisioned',
  removed: 'Removed',
  failed: 'Failed',
};

const EXTRA_STYLE = `
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; vertical-align: top; padding: .35rem .5rem; border-bottom: 1px solid #d6d6d6; }
thead th { border-bottom: 2px solid #1f3a5f; }
.state-pending { color: #7a5c00; } .state-provisioned { color: #1e6b34; } .state-removed { color: #444; } .state-failed { color: #a4262c; }
.filters { display: flex; flex-wrap: wrap; gap: .4rem 1rem; align-items: end; }
.filters label { margin-top: 0; }
.pager { display: flex; gap: 1rem; align-items: center; margin-top: .6rem; }
pre { white-space: pre-wrap; word-break: break-word; margin: .3rem 0; font-size: .85em; }
.sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
`;

/** The page's script: keeps the provisioning table current from the status stream. Text only (textContent), never markup. */
const LIVE_SCRIPT = `'use strict';
(function () {
  var note = document.getElementById('live-note');
  var body = document.getElementById('targets-body');
  var settled = document.getElementById('settled');
  if (!note || !body || typeof EventSource === 'undefined') return;
  var labels = JSON.parse(note.getAttribute('data-labels') || '{}');
  var empty = note.getAttribute('data-empty') || '';
  function cell(row, text, className) {
    var td = document.createElement('td');
    if (className) {
      var span = document.createElement('span');
      span.className = className; span.textContent = text; td.appendChild(span);
    } else { td.textContent = text; }
    row.appendChild(td);
    return td;
  }
  function render(status) {
    body.textContent = '';
    if (status.connectors.length === 0) {
      var tr = document.createElement('tr'); var td = cell(tr, empty); td.colSpan = 5; body.appendChild(tr);
    }
    status.connectors.forEach(function (c) {
      var tr = document.createElement('tr');
      tr.setAttribute('data-connector', c.connectorId);
      var th = document.createElement('th'); th.scope = 'row'; th.textContent = c.connectorId; tr.appendChild(th);
      var td = cell(tr, labels[c.state] || c.state, 'status state-' + c.state);
      td.firstChild.setAttribute('data-state', c.state);
      cell(tr, c.account || 'none yet');
      cell(tr, c.reason || '');
      cell(tr, c.lastSyncAt ? c.lastSyncAt.replace('T', ' ').slice(0, 19) + ' UTC' : '');
      body.appendChild(tr);
    });
    if (settled) settled.textContent = status.settled ? settled.getAttribute('data-yes') : settled.getAttribute('data-no');
  }
  var events = new EventSource(note.getAttribute('data-src'));
  events.addEventListener('open', function () { note.textContent = 'Live: this table updates by itself as provisioning progresses.'; });
  events.addEventListener('status', function (e) {
    render(JSON.parse(e.data));
    note.textContent = 'Live: updated at ' + new Date().toLocaleTimeString() + '.';
  });
  events.addEventListener('error', function () { note.textContent = 'Live updates are interrupted; they resume by themselves. You can also reload the page.'; });
})();
`;

/** The first value of a query parameter, trimmed ('' when absent). */
function one(value: unknown): string {
  const v = Array.isArray(value) ? (value as unknown[])[0] : value;
  return typeof v === 'string' ? v.trim() : '';
}

/** A 1-based page number from the query (1 for anything else). */
function pageOf(value: unknown): number {
  const v = one(value);
  return /^[1-9][0-9]{0,5}$/.test(v) ? Number(v) : 1;
}

/** A query string of the non-empty parameters. */
function qs(params: Record<string, string | number | undefined>): string {
  const s = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') s.set(k, String(v));
  const text = s.toString();
  return text ? `?${text}` : '';
}

const when = (d: Date | string | null | undefined): string => (d ? `${new Date(d).toISOString().replace('T', ' ').slice(0, 19)} UTC` : '');

function nonces(reply: FastifyReply): { script: string; style: string } {
  const n = (reply as FastifyReply & { cspNonce?: { script: string; style: string } }).cspNonce;
  return { script: n?.script ?? '', style: n?.style ?? '' };
}

export default function adminDirectory(app: FastifyInstance, kit: ConsoleKit): void {
  const { page, errorCard, admin } = kit;
  const max = (app.db as { options?: { max?: number } }).options?.max ?? 1;
  const watcher = new ProvisioningWatcher(app.db, { listen: max > 1, onError: (err) => app.log.warn({ err: err.message }, 'console: provisioning LISTEN unavailable, polling') });
  /** Open status streams, ended before the server closes (they never end by themselves). */
  const streams = new Set<() => void>();
  app.addHook('preClose', async () => {
    for (const end of [...streams]) end();
  });
  app.addHook('onClose', async () => await watcher.close());

  /** An administrators' page: the frame, this group's styles, and the body. */
  function adminPage(reply: FastifyReply, me: ConsoleSession, title: string, body: SafeHtml): FastifyReply {
    return page(reply, me, title, html`<style nonce="${nonces(reply).style}">${new SafeHtml(EXTRA_STYLE)}</style>${body}`);
  }

  function pager(path: string, params: Record<string, string | undefined>, pageNo: number, hasNext: boolean, total?: number): SafeHtml {
    if (pageNo === 1 && !hasNext) return html``;
    const pages = total === undefined ? undefined : Math.max(1, Math.ceil(total / PAGE_SIZE));
    return html`<nav class="pager" aria-label="Pages">
${pageNo > 1 ? html`<a href="${path}${qs({ ...params, page: pageNo - 1 })}" rel="prev">Previous page</a>` : ''}
<span>Page ${pageNo}${pages ? html` of ${pages}` : ''}</span>
${hasNext ? html`<a href="${path}${qs({ ...params, page: pageNo + 1 })}" rel="next">Next page</a>` : ''}</nav>`;
  }

  // ------------------------------------------------------------------ users

  function searchForm(q: string): SafeHtml {
    return html`<form method="get" action="/console/admin/users" role="search" class="card filters">
<div><label for="q">userName, display name or email contains</label><input id="q" name="q" type="search" value="${q}" maxlength="${MAX_SEARCH}"></div>
<button type="submit">Search</button></form>`;
  }

  app.get<{ Querystring: Record<string, unknown> }>('/admin/users', async (request, reply) => {
    const me = await admin(request, reply);
    if (!me) return reply;
    const q = one(request.query.q);
    const pageNo = pageOf(request.query.page);
    if (q.length > MAX_SEARCH) return adminPage(reply.code(400), me, 'Users', html`${searchForm('')}${errorCard(`Search for at most ${MAX_SEARCH} characters.`, html``)}`);
    let result: ListResult;
    try {
      // The same SCIM filter a client could send: "co" is case-insensitive on these attributes.
      const filter = q ? parseFilter(['userName', 'displayName', 'emails.value'].map((a) => `${a} co ${JSON.stringify(q)}`).join(' or ')) : undefined;
      result = await app.directory.list('User', { filter, startIndex: (pageNo - 1) * PAGE_SIZE + 1, count: PAGE_SIZE, sortBy: 'userName', withGroups: false });
    } catch (err) {
      if (err instanceof ScimError && err.status === 400) return adminPage(reply.code(400), me, 'Users', html`${searchForm(q)}${errorCard(`This search cannot be run: ${err.detail}. Try other text.`, html``)}`);
      throw err;
    }
    const rows = result.resources.map((u) => {
      const r = u.resource as { userName?: string; displayName?: string; active?: boolean; emails?: Array<{ value?: string; primary?: boolean }> };
      const emails = Array.isArray(r.emails) ? r.emails : [];
      const email = (emails.find((e) => e.primary) ?? emails[0])?.value ?? '';
      return html`<tr><th scope="row"><a href="/console/admin/users/${u.id}">${r.userName ?? u.id}</a></th><td>${r.displayName ?? ''}</td><td>${email}</td><td>${r.active === false ? 'no' : 'yes'}</td></tr>`;
    });
    let body: SafeHtml;
    if (rows.length) {
      body = html`<p>${result.totalResults} user${result.totalResults === 1 ? '' : 's'}${q ? html` matching “${q}”` : ''}.</p>
<table><thead><tr><th scope="col">userName</th><th scope="col">Display name</th><th scope="col">Email</th><th scope="col">Active</th></tr></thead><tbody>${rows}</tbody></table>
${pager('/console/admin/users', { q }, pageNo, pageNo * PAGE_SIZE < result.totalResults, result.totalResults)}`;
    } else if (q) {
      body = html`<div class="card"><p>No user’s userName, display name or email contains “${q}”${pageNo > 1 ? ' on this page' : ''}. Check the spelling or search for a shorter part of it.</p><p><a href="/console/admin/users">Show all users</a></p></div>`;
    } else if (pageNo > 1) {
      body = html`<div class="card"><p>There is no page ${pageNo}. <a href="/console/admin/users">Back to the first page</a>.</p></div>`;
    } else {
      body = html`<div class="card"><p>There are no directory users yet. Connect your identity provider’s SCIM provisioning to the gateway (<code>/scim/v2</code>) or import users from a source; they appear here.</p></div>`;
    }
    return adminPage(reply, me, 'Users', html`${searchForm(q)}${body}`);
  });

  function statusRows(status: ProvisioningStatus, empty: string): SafeHtml {
    if (status.connectors.length === 0) return html`<tr><td colspan="5">${empty}</td></tr>`;
    return html`${status.connectors.map(
      (c) => html`<tr data-connector="${c.connectorId}"><th scope="row">${c.connectorId}</th><td><span class="status state-${c.state}" data-state="${c.state}">${STATE_TEXT[c.state]}</span></td>
<td>${c.account ?? 'none yet'}</td><td>${c.reason ?? ''}</td><td>${when(c.lastSyncAt)}</td></tr>`,
    )}`;
  }

  app.get<{ Params: { id: string } }>('/admin/users/:id', { helmet: CONSOLE_LIVE_HELMET }, async (request, reply) => {
    const me = await admin(request, reply);
    if (!me) return reply;
    const back = html`<p><a href="/console/admin/users">Search users</a></p>`;
    const id = request.params.id;
    let user: StoredResource | undefined;
    try {
      user = UUID.test(id) ? await app.directory.get('User', id, { withGroups: false }) : undefined;
    } catch (err) {
      if (!(err instanceof ScimError && err.status === 404)) throw err;
    }
    if (!user) {
      const deleted = UUID.test(id) ? (await app.db.query('SELECT 1 FROM users WHERE id = $1', [id])).rows.length > 0 : false;
      return adminPage(
        reply.code(404),
        me,
        'User',
        errorCard(
          deleted ? 'This user was deleted from the directory. Their history stays in the audit log.' : 'There is no such user.',
          html`${deleted ? html`<p><a href="/console/admin/audit${qs({ userId: id })}">Audit events about this user</a></p>` : ''}${back}`,
        ),
      );
    }
    const r = user.resource as { userName?: string; displayName?: string; externalId?: string; active?: boolean; emails?: Array<{ value?: string }> };
    const status = await provisioningStatus(app.db, id);
    const workflowId = userSyncWorkflowId(id);
    const workflowUrl = workflowUiUrl(app.config.temporalUiUrl, app.config.temporalNamespace, workflowId);
    const empty = 'Nothing to provision: this user holds no grant and has no account in any enabled connector. Rules, access requests and direct grants give access.';
    const yes = 'Every change to this user has been applied by their workflow.';
    const no = 'Changes to this user are still being applied by their workflow.';
    const labels = JSON.stringify(STATE_TEXT);
    const emails = (Array.isArray(r.emails) ? r.emails : []).map((e) => e.value).filter((v): v is string => typeof v === 'string');
    const body = html`<section class="card" aria-labelledby="who"><h2 id="who">${r.displayName ?? r.userName ?? id}</h2>
<dl><dt>userName</dt><dd>${r.userName ?? ''}</dd><dt>Display name</dt><dd>${r.displayName ?? '—'}</dd><dt>Emails</dt><dd>${emails.length ? emails.join(', ') : '—'}</dd>
<dt>External id</dt><dd>${r.externalId ?? '—'}</dd><dt>Active</dt><dd>${r.active === false ? 'no (deprovisioned)' : 'yes'}</dd><dt>Id</dt><dd><code>${id}</code></dd></dl>
<p><a href="/console/admin/access${qs({ user: r.userName ?? id })}">What this user holds, and why</a> · <a href="/console/admin/audit${qs({ userId: id })}">Audit events about this user</a></p></section>
<section class="card" aria-labelledby="prov"><h2 id="prov">Provisioning by target</h2>
<p id="settled" data-yes="${yes}" data-no="${no}">${status.settled ? yes : no}</p>
<table><thead><tr><th scope="col">Target (connector)</th><th scope="col">Status</th><th scope="col">Account</th><th scope="col">Reason</th><th scope="col">Last applied</th></tr></thead>
<tbody id="targets-body">${statusRows(status, empty)}</tbody></table>
<p id="live-note" role="status" aria-live="polite" data-src="/console/admin/users/${id}/status" data-labels="${labels}" data-empty="${empty}">This is the status when the page was loaded: reload the page to see changes.</p>
<p>Workflow: ${workflowUrl ? html`<a href="${workflowUrl}">${workflowId}</a> in the Temporal UI` : html`<code>${workflowId}</code> (set TEMPORAL_UI_URL to link it to the Temporal UI)`}</p></section>
<script nonce="${nonces(reply).script}" src="/console/admin/live-status.js" defer></script>`;
    return adminPage(reply, me, `User ${r.userName ?? id}`, body);
  });

  app.get('/admin/live-status.js', async (request, reply) => {
    const me = await admin(request, reply);
    if (!me) return reply;
    return reply.type('text/javascript; charset=utf-8').header('cache-control', 'no-cache').send(LIVE_SCRIPT);
  });

  app.get<{ Params: { id: string } }>('/admin/users/:id/status', async (request, reply) => {
    const me = await admin(request, reply);
    if (!me) return reply;
    const id = request.params.id;
    const exists = UUID.test(id) && (await app.db.query('SELECT 1 FROM users WHERE id = $1', [id])).rows.length > 0;
    if (!exists) return adminPage(reply.code(404), me, 'User', errorCard('There is no such user.', html`<p><a href="/console/admin/users">Search users</a></p>`));
    const stream = openEventStream(reply);
    streams.add(stream.end);
    stream.onEnd(() => streams.delete(stream.end));
    let last = '';
    // Only changes are sent.
    const evaluate = stream.evaluator(
      async () => {
        const json = JSON.stringify(await provisioningStatus(app.db, id));
        if (json !== last) {
          last = json;
          stream.send('status', json, true);
        }
      },
      (err) => request.log.error({ err: err.message }, 'console: provisioning status failed'),
    );
    stream.onEnd(await watcher.subscribe(id, () => void evaluate()));
    await evaluate();
  });

  // ------------------------------------------------------------------ who has what

  interface AccessFilters {
    user: string;
    entitlement: string;
    connector: string;
  }

  /** The filters resolved for core/provisioning/holdings.ts, or what is wrong with them. */
  async function holdingFilter(f: AccessFilters): Promise<{ userId?: string; entitlementId?: string; connectorId?: string } | string> {
    const out: { userId?: string; entitlementId?: string; connectorId?: string } = {};
    if (f.user) {
      const userId = await resolveUser(app.db, f.user);
      if (!userId) return `There is no user “${f.user}”. Give a userName or a user id, or find the user under Users.`;
      out.userId = userId;
    }
    if (f.entitlement) {
      const entitlementId = await resolveEntitlement(app.db, f.entitlement);
      if (!entitlementId) return `There is no entitlement “${f.entitlement}”. Choose one from the list.`;
      out.entitlementId = entitlementId;
    }
    if (f.connector) {
      const { rows } = await app.db.query('SELECT 1 FROM connectors WHERE id = $1', [f.connector]);
      if (!rows[0]) return `There is no connector “${f.connector}”. Choose one from the list.`;
      out.connectorId = f.connector;
    }
    return out;
  }

  async function accessForm(f: AccessFilters): Promise<SafeHtml> {
    const { rows: connectors } = await app.db.query<{ id: string }>('SELECT id FROM connectors ORDER BY id');
    const { rows: entitlements } = await app.db.query<{ id: string; key: string }>(`SELECT id, connector_id || '/' || name AS key FROM entitlements ORDER BY connector_id, name`);
    const selected = (value: string, ...matches: string[]) => (matches.includes(value) ? html` selected` : '');
    return html`<form method="get" action="/console/admin/access" class="card filters" aria-label="Filters">
<div><label for="f-user">User (userName or id)</label><input id="f-user" name="user" value="${f.user}" maxlength="300"></div>
<div><label for="f-connector">Connector</label><select id="f-connector" name="connector"><option value="">any</option>${connectors.map((c) => html`<option value="${c.id}"${selected(f.connector, c.id)}>${c.id}</option>`)}</select></div>
<div><label for="f-entitlement">Entitlement</label><select id="f-entitlement" name="entitlement"><option value="">any</option>${entitlements.map(
      (e) => html`<option value="${e.key}"${selected(f.entitlement, e.key, e.id)}>${e.key}</option>`,
    )}</select></div>
<button type="submit">Filter</button> <a href="/console/admin/access">Clear filters</a></form>`;
  }

  function holdingRow(h: Holding): SafeHtml {
    const validity = h.validUntil ? `until ${when(h.validUntil)}` : h.validFrom && new Date(h.validFrom) > new Date() ? `from ${when(h.validFrom)}` : '';
    return html`<tr><th scope="row"><a href="/console/admin/users/${h.userId}">${h.userName}</a></th><td>${h.connectorId}</td><td>${h.entitlement}</td>
<td>${describeWhy(h)}${validity ? html`<br><small>${validity}</small>` : ''}</td><td>${h.applied ? 'yes' : 'not yet'}</td></tr>`;
  }

  app.get<{ Querystring: Record<string, unknown> }>('/admin/access', async (request, reply) => {
    const me = await admin(request, reply);
    if (!me) return reply;
    const f: AccessFilters = { user: one(request.query.user), entitlement: one(request.query.entitlement), connector: one(request.query.connector) };
    const pageNo = pageOf(request.query.page);
    const form = await accessForm(f);
    const filter = await holdingFilter(f);
    if (typeof filter === 'string') return adminPage(reply.code(404), me, 'Who has what', html`${form}${errorCard(filter, html``)}`);
    const rows = await listHoldings(app.db, { ...filter, limit: PAGE_SIZE + 1, offset: (pageNo - 1) * PAGE_SIZE });
    const filtered = Boolean(f.user || f.entitlement || f.connector);
    let body: SafeHtml;
    if (rows.length) {
      body = html`<p><a href="/console/admin/access.csv${qs({ ...f })}" download>Download as CSV</a> (every row matching the filters)</p>
<table><thead><tr><th scope="col">User</th><th scope="col">Connector</th><th scope="col">Entitlement</th><th scope="col">Why</th><th scope="col">Applied in the target</th></tr></thead>
<tbody>${rows.slice(0, PAGE_SIZE).map(holdingRow)}</tbody></table>
${pager('/console/admin/access', { ...f }, pageNo, rows.length > PAGE_SIZE)}`;
    } else if (pageNo > 1) {
      body = html`<div class="card"><p>There is no page ${pageNo}. <a href="/console/admin/access${qs({ ...f })}">Back to the first page</a>.</p></div>`;
    } else if (filtered) {
      body = html`<div class="card"><p>Nobody holds anything matching these filters. Widen them, or <a href="/console/admin/access">clear the filters</a>.</p></div>`;
    } else {
      body = html`<div class="card"><p>Nobody holds any entitlement yet. Access comes from birthright rules, access requests and direct grants (docs/provisioning.md); define connectors and entitlements first.</p></div>`;
    }
    return adminPage(reply, me, 'Who has what', html`${form}${body}`);
  });

  app.get<{ Querystring: Record<string, unknown> }>('/admin/access.csv', async (request, reply) => {
    const me = await admin(request, reply);
    if (!me) return reply;
    const f: AccessFilters = { user: one(request.query.user), entitlement: one(request.query.entitlement), connector: one(request.query.connector) };
    const filter = await holdingFilter(f);
    if (typeof filter === 'string') return adminPage(reply.code(404), me, 'Who has what', errorCard(filter, html`<p><a href="/console/admin/access">Back to who has what</a></p>`));
    const chunks = holdingsCsv(app.db, filter);
    // The first chunk comes after the first query, so a database error is still an error page.
    const first = await chunks.next();
    async function* body(): AsyncGenerator<string> {
      if (!first.done) yield first.value;
      yield* chunks;
    }
    return reply
      .type('text/csv; charset=utf-8')
      .header('cache-control', 'no-store')
      .header('content-disposition', 'attachment; filename="who-has-what.csv"')
      .send(Readable.from(body(), { objectMode: false }));
  });

  // ------------------------------------------------------------------ audit log

  const AUDIT_FIELDS = ['actor', 'action', 'resourceType', 'resourceId', 'userId', 'since', 'until'] as const;
  type AuditForm = Record<(typeof AUDIT_FIELDS)[number], string>;

  function auditForm(f: AuditForm): SafeHtml {
    const field = (name: keyof AuditForm, label: string, hint?: string) =>
      html`<div><label for="a-${name}">${label}</label><input id="a-${name}" name="${name}" value="${f[name]}" maxlength="300"${hint ? html` placeholder="${hint}"` : ''}></div>`;
    return html`<form method="get" action="/console/admin/audit" class="card filters" aria-label="Filters">
${field('actor', 'Actor', 'token name, workflow id, rule:…')}${field('action', 'Action', 'user.created')}${field('resourceType', 'Resource type', 'User, Group, Grant, Account')}
${field('resourceId', 'Resource id')}${field('userId', 'Concerning user (id)')}${field('since', 'From (UTC)', '2024-05-01 or 2024-05-01T12:00:00Z')}${field('until', 'Before (UTC)', '2024-06-01')}
<button type="submit">Filter</button> <a href="/console/admin/audit">Clear filters</a></form>
<form method="get" action="/console/admin/audit/verify" class="card"><p>The log is a hash chain: verifying it reads every event and checks that none was altered, removed or reordered.</p><button type="submit" class="secondary">Verify the chain</button></form>`;
  }

  function eventRow(e: AuditEvent): SafeHtml {
    const change = e.before !== null || e.after !== null;
    return html`<tr><td>${e.id}</td><td>${e.at.replace('T', ' ').slice(0, 19)} UTC</td><td>${e.actor}</td><td>${e.action}</td>
<td>${e.resourceType}${e.resourceId ? html`<br><code>${e.resourceId}</code>` : ''}</td><td>${e.reason ?? ''}</td>
<td>${change ? html`<details><summary>Before and after</summary>${e.before !== null ? html`<pre>before: ${JSON.stringify(e.before, null, 1)}</pre>` : ''}${e.after !== null ? html`<pre>after: ${JSON.stringify(e.after, null, 1)}</pre>` : ''}</details>` : ''}</td></tr>`;
  }

  app.get<{ Querystring: Record<string, unknown> }>('/admin/audit', async (request, reply) => {
    const me = await admin(request, reply);
    if (!me) return reply;
    const f = Object.fromEntries(AUDIT_FIELDS.map((k) => [k, one(request.query[k])])) as AuditForm;
    const before = one(request.query.beforeId);
    const query: AuditFilterQuery = Object.fromEntries(Object.entries({ ...f, beforeId: before }).filter(([, v]) => v !== ''));
    const filter = auditFilterOf(query);
    if (typeof filter === 'string') return adminPage(reply.code(400), me, 'Audit log', html`${auditForm(f)}${errorCard(`${filter}.`, html``)}`);
    const { events, nextBeforeId } = await listAuditEventsNewestFirst(app.db, filter, PAGE_SIZE);
    const filtered = AUDIT_FIELDS.some((k) => f[k] !== '');
    let body: SafeHtml;
    if (events.length) {
      body = html`<table><thead><tr><th scope="col">Id</th><th scope="col">At</th><th scope="col">Actor</th><th scope="col">Action</th><th scope="col">Resource</th><th scope="col">Reason</th><th scope="col">Change</th></tr></thead>
<tbody>${events.map(eventRow)}</tbody></table>
<nav class="pager" aria-label="Pages">${before ? html`<a href="/console/admin/audit${qs(f)}">Newest events</a>` : ''}${nextBeforeId !== null ? html`<a href="/console/admin/audit${qs({ ...f, beforeId: nextBeforeId })}" rel="next">Older events</a>` : ''}</nav>`;
    } else if (before) {
      body = html`<div class="card"><p>No older events. <a href="/console/admin/audit${qs(f)}">Back to the newest</a>.</p></div>`;
    } else if (filtered) {
      body = html`<div class="card"><p>No event matches these filters. Actor, action and resource must match exactly (action <code>user.created</code>, resource type <code>User</code>); widen the time range or <a href="/console/admin/audit">clear the filters</a>.</p></div>`;
    } else {
      body = html`<div class="card"><p>The audit log is empty: every change to users, groups, grants, connectors and tokens is recorded here as it happens.</p></div>`;
    }
    return adminPage(reply, me, 'Audit log', html`${auditForm(f)}${body}`);
  });

  app.get('/admin/audit/verify', async (request, reply) => {
    const me = await admin(request, reply);
    if (!me) return reply;
    const result = await verifyAuditChain(app.db);
    const back = html`<p><a href="/console/admin/audit">Back to the audit log</a></p>`;
    const body = result.ok
      ? html`<div class="card ok" role="status"><p><strong>The chain is intact.</strong> ${result.checked} event${result.checked === 1 ? '' : 's'} checked.</p>
${result.lastId !== undefined ? html`<p>Last event ${result.lastId}, hash <code>${result.lastHash ?? ''}</code>. Record this hash outside the database: a later chain that no longer contains it was rewritten.</p>` : ''}${result.pending !== undefined ? html`<p>${result.pending} event${result.pending === 1 ? ' was' : 's were'} recorded during the check and ${result.pending === 1 ? 'is' : 'are'} not chained yet; the next check covers ${result.pending === 1 ? 'it' : 'them'}.</p>` : ''}${back}</div>`
      : html`<div class="card error" role="alert"><p><strong>The chain is broken.</strong> ${result.reason ?? ''}.</p>
<p>${result.checked} event${result.checked === 1 ? '' : 's'} verified intact before it${result.firstBadId !== undefined ? html`; the first bad event is ${result.firstBadId}` : ''}.</p>
<p>Compare with a backup of the database and a hash recorded earlier, and find out who has write access to <code>audit_events</code>.</p>
${result.firstBadId !== undefined ? html`<p><a href="/console/admin/audit${qs({ beforeId: result.firstBadId + 1 })}">Show the events up to it</a></p>` : ''}${back}</div>`;
    return adminPage(reply, me, 'Audit chain verification', body);
  });
}
