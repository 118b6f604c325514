/**
 * The console's pages for access people hold and the work of fulfilment groups:
 *
 * - **My access** (`/console/access`): the signed-in person's running access (fulfilled requests and
 *   other grants: what, since, until, why), with *extend* (a new request with `extends`, made by the
 *   same `createRequest` as `POST /api/requests`) and *release* (the same `releaseAccess` as
 *   `POST /api/requests/{id}/release`: the grant ends or the fulfilment group gets the task to take
 *   the access away).
 * - Cancelling one's own pending request (the same `cancelRequest` as `POST /api/requests/{id}/cancel`).
 * - **Tasks** (`/console/tasks`): the open manual fulfilment tasks of the person's fulfilment groups,
 *   with claim, done and failed, authorised by the same `claimTaskAs` and `completeTaskAs` as
 *   `POST /api/tasks/{id}/claim` and `/complete`: a forged form changes nothing it may not.
 */
import type { FastifyInstance } from 'fastify';
import { findPolicy } from '../../core/access/policies.js';
import { createRequest, currentAccessOf, getRequest, RequestRefused, type CurrentAccess } from '../../core/access/requests.js';
import { tasksOf, type AccessTaskView } from '../../core/access/tasks.js';
import { cancelRequest, claimTaskAs, completeTaskAs, releaseAccess, type ActionOutcome } from '../access-actions.js';
import { html, type SafeHtml } from './html.js';
import { emptyList, onePage, pageNumber, pager, requestFields, UUID, type ConsoleKit, type Form } from './kit.js';
import type { ConsoleSession } from './session.js';

type Refused = Extract<ActionOutcome<unknown>, { ok: false }>;

const when = (iso: string) => new Date(iso).toUTCString();

/** Where a refused action leaves the person, in words: what happened and what to do next is the caller's link. */
function refusalText(what: string, r: Refused): string {
  switch (r.status) {
    case 403:
      return `You may not ${what}: ${r.message}.`;
    case 503:
      return `${r.message[0]!.toUpperCase()}${r.message.slice(1)}.`;
    default:
      return `Could not ${what}: ${r.message}.`;
  }
}

export function accessPages(app: FastifyInstance, kit: ConsoleKit): void {
  const { page, errorCard, signedIn, acting } = kit;
  const temporal = () => app.temporal.client();

  // ------------------------------------------------------------------ my access

  const toAccess = html`<p><a href="/console/access">Back to My access</a></p>`;

  /** The longest duration each request's policy allows now (seconds; null: no limit), for the extension forms. */
  async function maxDurations(requestIds: string[]): Promise<Map<string, number | null>> {
    if (requestIds.length === 0) return new Map();
    const { rows } = await app.db.query<{ id: string; max: number | null }>(
      'SELECT r.id, p.max_duration_s AS max FROM access_requests r JOIN access_policies p ON p.id = r.policy_id WHERE r.id = ANY ($1::uuid[])',
      [requestIds],
    );
    return new Map(rows.map((r) => [r.id, r.max]));
  }

  function why(a: CurrentAccess): string {
    if (a.requestId) return a.justification ?? 'requested without a justification';
    if (a.reason === 'manual') return 'given by an administrator';
    if (a.reason.startsWith('rule:')) return `the rule ${a.reason.slice(5)} (everyone it covers has it)`;
    return a.reason;
  }

  function accessCard(a: CurrentAccess, me: ConsoleSession, max: number | null | undefined): SafeHtml {
    const key = a.requestId ?? a.grantId ?? '';
    const id = `a-${key}`;
    const starts = new Date(a.since).getTime() > Date.now();
    const actions = a.requestId
      ? html`${a.until !== null
          ? html`<form method="post" action="/console/access/${a.requestId}/extend"><input type="hidden" name="_csrf" value="${me.csrf}">
<label for="${id}-hours">Extend by how many hours (empty: the policy's default)</label><input id="${id}-hours" name="hours" type="number" min="1" ${max ? html`max="${Math.floor(max / 3600)}"` : ''}>
<label for="${id}-why">Why you need it longer</label><textarea id="${id}-why" name="justification" rows="2" maxlength="4000"></textarea>
<button type="submit">Ask to extend ${a.displayName}</button></form>`
          : ''}
<form method="post" action="/console/access/${a.requestId}/release"><input type="hidden" name="_csrf" value="${me.csrf}">
<label for="${id}-reason">Why you give it up (optional)</label><textarea id="${id}-reason" name="reason" rows="1" maxlength="4000"></textarea>
<button type="submit" class="secondary">Release ${a.displayName} now</button></form>`
      : html`<p>This access does not come from a request of yours: to change it, ask an administrator.</p>`;
    return html`<article class="card" aria-labelledby="${id}"><h2 id="${id}">${a.displayName}</h2>
<dl><dt>What</dt><dd>${a.entitlement ?? 'given by hand by the fulfilment group'}</dd>
<dt>${starts ? 'Starts' : 'Since'}</dt><dd>${when(a.since)}</dd>
<dt>Until</dt><dd>${a.until ? when(a.until) : 'no end'}</dd>
<dt>Why</dt><dd>${why(a)}</dd>
${a.extends ? html`<dt>Extends</dt><dd>request ${a.extends}</dd>` : ''}${a.requestId ? html`<dt>Request</dt><dd>${a.requestId}</dd>` : ''}</dl>
${actions}</article>`;
  }

  app.get<{ Querystring: { page?: string; released?: string } }>('/access', async (request, reply) => {
    const me = await signedIn(request, reply);
    if (!me) return reply;
    const pageNo = pageNumber(request.query.page);
    const { items, hasNext } = await onePage(pageNo, (limit, offset) => currentAccessOf(app.db, me.userId, limit, offset));
    const maxima = await maxDurations(items.flatMap((a) => (a.requestId ? [a.requestId] : [])));
    let notice: SafeHtml | string = '';
    const released = request.query.released && UUID.test(request.query.released) ? await getRequest(app.db, request.query.released) : undefined;
    if (released && released.requesterId === me.userId && released.status === 'revoked') {
      notice = html`<div class="card ok" role="status"><p>You released ${released.displayName}. ${
        released.tasks.some((x) => x.kind === 'revoke') ? 'The fulfilment group has a task to take it away.' : 'It is being removed from the system that holds it.'
      }</p></div>`;
    }
    const empty = html`<p>You hold no access from requests or grants right now. <a href="/console/catalogue">Request access</a>; access being granted is under <a href="/console/requests">My requests</a>.</p>`;
    const cards = items.map((a) => accessCard(a, me, a.requestId ? maxima.get(a.requestId) : undefined));
    return page(reply, me, 'My access', html`${notice}${items.length ? cards : emptyList('/console/access', pageNo, empty)}${pager('/console/access', pageNo, hasNext)}`);
  });

  app.post<{ Params: { id: string }; Body: Form }>('/access/:id/extend', async (request, reply) => {
    const acted = await acting(request, reply);
    if (!acted) return reply;
    const { me, form } = acted;
    const view = UUID.test(request.params.id) ? await getRequest(app.db, request.params.id) : undefined;
    if (!view || view.requesterId !== me.userId) return page(reply.code(404), me, 'Extend access', errorCard('You have no such request.', toAccess));
    const { rows } = await app.db.query<{ policy_id: string }>('SELECT policy_id FROM access_requests WHERE id = $1', [view.id]);
    const policy = await findPolicy(app.db, rows[0]!.policy_id);
    if (!policy) return page(reply.code(404), me, 'Extend access', errorCard('The access policy of this request no longer exists, so it cannot be extended. Ask an administrator.', toAccess));
    const fields = requestFields(form);
    if ('error' in fields) return page(reply.code(400), me, 'Extend access', errorCard(fields.error, toAccess));
    let id: string;
    try {
      // The same path as POST /api/requests with `extends`.
      id = await createRequest(app.db, app.scimRegistry, {
        policy,
        requesterId: me.userId,
        createdBy: `console:${me.userName}`,
        extendsId: view.id,
        ...fields,
      });
    } catch (err) {
      if (err instanceof RequestRefused) return page(reply.code(err.status), me, 'Extend access', errorCard(`The extension was not requested: ${err.message}.`, html`<p><a href="/console/access">Back to My access</a> · <a href="/console/requests">My requests</a></p>`));
      throw err;
    }
    app.outbox.kick();
    return reply.redirect(`/console/requests?created=${id}`, 303);
  });

  app.post<{ Params: { id: string }; Body: Form }>('/access/:id/release', async (request, reply) => {
    const acted = await acting(request, reply);
    if (!acted) return reply;
    const { me, form } = acted;
    if (!UUID.test(request.params.id)) return page(reply.code(404), me, 'Release access', errorCard('You have no such request.', toAccess));
    const reason = (form.reason ?? '').trim().slice(0, 4000);
    const outcome = await releaseAccess(app.db, temporal, me, request.params.id, 'console', reason || undefined);
    if (outcome.ok) {
      app.outbox.kick();
      return reply.redirect(`/console/access?released=${request.params.id}`, 303);
    }
    if (outcome.status === 404) return page(reply.code(404), me, 'Release access', errorCard('You have no such request.', toAccess));
    return page(reply.code(outcome.status), me, 'Release access', errorCard(refusalText('release this access', outcome), toAccess));
  });

  // ------------------------------------------------------------------ cancelling a pending request

  app.post<{ Params: { id: string }; Body: Form }>('/requests/:id/cancel', async (request, reply) => {
    const acted = await acting(request, reply);
    if (!acted) return reply;
    const { me } = acted;
    const back = html`<p><a href="/console/requests">Back to My requests</a></p>`;
    const view = UUID.test(request.params.id) ? await getRequest(app.db, request.params.id) : undefined;
    if (!view || view.requesterId !== me.userId) return page(reply.code(404), me, 'Cancel a request', errorCard('You have no such request.', back));
    const outcome = await cancelRequest(app.db, temporal, view, { actorId: me.userId, actorName: me.userName, asAdmin: false });
    if (outcome.ok) return reply.redirect(`/console/requests?cancelled=${view.id}`, 303);
    return page(reply.code(outcome.status), me, 'Cancel a request', errorCard(refusalText('cancel this request', outcome), back));
  });

  // ------------------------------------------------------------------ manual fulfilment tasks

  const toTasks = html`<p><a href="/console/tasks">Back to Tasks</a></p>`;
  const DONE_TEXT: Record<string, string> = {
    claimed: 'You claimed the task: do what it says, then report it done or failed.',
    done: 'The task is recorded as done; the requester is told.',
    failed: 'The task is recorded as failed; the requester is told.',
  };

  function taskCard(t: AccessTaskView, me: ConsoleSession): SafeHtml {
    const id = `t-${t.id}`;
    const mine = t.status === 'claimed' && t.claimedBy === me.userName;
    const status = t.status === 'claimed' ? `claimed by ${mine ? 'you' : (t.claimedBy ?? 'someone')}` : 'open';
    const report =
      t.status === 'open' || mine
        ? html`<form method="post" action="/console/tasks/${t.id}/complete"><input type="hidden" name="_csrf" value="${me.csrf}">
<label for="${id}-note">Note for the requester (optional)</label><textarea id="${id}-note" name="note" rows="2" maxlength="4000"></textarea>
<button type="submit" name="outcome" value="done">${t.kind === 'grant' ? 'Done: the access is given' : 'Done: the access is taken away'}</button> <button type="submit" name="outcome" value="failed" class="secondary">Failed</button></form>`
        : html`<p>${t.claimedBy ?? 'Someone'} claimed this task and reports it done or failed.</p>`;
    return html`<article class="card" aria-labelledby="${id}"><h2 id="${id}">${t.kind === 'grant' ? 'Give' : 'Take away'}: ${t.displayName}</h2>
<dl><dt>For</dt><dd>${t.requester}</dd><dt>Status</dt><dd><span class="status" data-status="${t.status}">${status}</span></dd>
<dt>Opened</dt><dd>${when(t.createdAt)}</dd><dt>Instructions</dt><dd>${t.instructions ?? '—'}</dd><dt>Request</dt><dd>${t.requestId}</dd></dl>
${t.status === 'open' ? html`<form method="post" action="/console/tasks/${t.id}/claim"><input type="hidden" name="_csrf" value="${me.csrf}"><button type="submit" class="secondary">Claim this task</button></form>` : ''}
${report}</article>`;
  }

  app.get<{ Querystring: { page?: string; done?: string } }>('/tasks', async (request, reply) => {
    const me = await signedIn(request, reply);
    if (!me) return reply;
    const pageNo = pageNumber(request.query.page);
    const { items, hasNext } = await onePage(pageNo, (limit, offset) => tasksOf(app.db, me.userId, limit, offset));
    const done = request.query.done !== undefined ? DONE_TEXT[request.query.done] : undefined;
    const notice = done ? html`<div class="card ok" role="status"><p>${done}</p></div>` : '';
    const empty = html`<p>No task is waiting for you. Tasks appear here for the members of a fulfilment group when access given by hand is approved (give it) or ends (take it away).</p>`;
    return page(reply, me, 'Tasks', html`${notice}${items.length ? items.map((t) => taskCard(t, me)) : emptyList('/console/tasks', pageNo, empty)}${pager('/console/tasks', pageNo, hasNext)}`);
  });

  app.post<{ Params: { id: string }; Body: Form }>('/tasks/:id/claim', async (request, reply) => {
    const acted = await acting(request, reply);
    if (!acted) return reply;
    const { me } = acted;
    if (!UUID.test(request.params.id)) return page(reply.code(404), me, 'Tasks', errorCard('There is no such task.', toTasks));
    // The same rules as POST /api/tasks/{id}/claim: only the task's assignees, only while it is open.
    const outcome = await claimTaskAs(app.db, me, request.params.id);
    if (outcome.ok) return reply.redirect('/console/tasks?done=claimed', 303);
    if (outcome.status === 404) return page(reply.code(404), me, 'Tasks', errorCard('There is no such task.', toTasks));
    return page(reply.code(outcome.status), me, 'Tasks', errorCard(refusalText('claim this task', outcome), toTasks));
  });

  app.post<{ Params: { id: string }; Body: Form }>('/tasks/:id/complete', async (request, reply) => {
    const acted = await acting(request, reply);
    if (!acted) return reply;
    const { me, form } = acted;
    if (!UUID.test(request.params.id)) return page(reply.code(404), me, 'Tasks', errorCard('There is no such task.', toTasks));
    if (form.outcome !== 'done' && form.outcome !== 'failed') return page(reply.code(400), me, 'Tasks', errorCard('Choose done or failed.', toTasks));
    const note = (form.note ?? '').trim().slice(0, 4000);
    // The same rules as POST /api/tasks/{id}/complete, through the request's workflow.
    const outcome = await completeTaskAs(app.db, temporal, me, request.params.id, form.outcome, note || undefined);
    if (outcome.ok) return reply.redirect(`/console/tasks?done=${form.outcome}`, 303);
    if (outcome.status === 404) return page(reply.code(404), me, 'Tasks', errorCard('There is no such task.', toTasks));
    return page(reply.code(outcome.status), me, 'Tasks', errorCard(refusalText(`report this task ${form.outcome}`, outcome), toTasks));
  });
}
