/**
 * The console's Reviews page: the items of open access reviews waiting on the signed-in person,
 * each with why the user holds it, and one form to keep or revoke any number of them (with a
 * comment each). Decisions go through the same {@link decideReviewsAs} as the REST API, so the
 * same rules apply: only the designated reviewer, no self-review, idempotent; access a rule gives
 * offers no revoke (the rule is changed instead).
 */
import type { FastifyInstance } from 'fastify';
import { reviewsOf, type ReviewItemView } from '../../core/access/reviews.js';
import { decideReviewsAs } from '../review-decisions.js';
import { html, type SafeHtml } from './html.js';
import { UUID, type ConsoleKit, type Form } from './kit.js';

/** Items shown (and decidable) on one page. */
const REVIEW_PAGE = 200;

function why(i: ReviewItemView): string {
  return i.reasons
    .map((r) =>
      r.startsWith('rule:')
        ? `rule ${r.slice(5)} (birthright)`
        : r === 'manual'
          ? 'granted directly by an administrator'
          : r.startsWith('request:')
            ? `access request ${r.slice(8)}`
            : r.startsWith('invitation:')
              ? `invitation ${r.slice(11)}`
              : r === 'reconcile'
                ? 'found in the target; nobody granted it'
                : r,
    )
    .join('; ');
}

export function reviewPages(app: FastifyInstance, kit: ConsoleKit): void {
  const { page, errorCard, signedIn, acting } = kit;

  app.get<{ Querystring: { decided?: string; refused?: string } }>('/reviews', async (request, reply) => {
    const me = await signedIn(request, reply);
    if (!me) return reply;
    const items = await reviewsOf(app.db, me.userId, REVIEW_PAGE);
    const decided = Number(request.query.decided ?? 0);
    const refused = Number(request.query.refused ?? 0);
    const notice: SafeHtml | '' =
      decided || refused
        ? html`<div class="card ${refused ? 'error' : 'ok'}" role="status"><p>${decided} decision${decided === 1 ? '' : 's'} recorded${refused ? html`; ${refused} refused` : ''}.</p></div>`
        : '';
    if (items.length === 0) return page(reply, me, 'Reviews', html`${notice}<div class="card"><p>No access review is waiting on you.</p></div>`);
    const campaigns = [...new Map(items.map((i) => [i.campaignId, i.campaign])).entries()];
    const rows = (list: ReviewItemView[]) =>
      list.map(
        (i) => html`<fieldset><legend>${i.userName}: ${i.entitlement}</legend>
<p>Why: ${why(i)}${i.escalated ? ' · escalated: not reviewed by the due date' : ''}</p>
<label><input type="radio" name="d-${i.id}" value="" checked> Decide later</label>
<label><input type="radio" name="d-${i.id}" value="keep"> Keep</label>
${i.birthright && i.rules.length === i.reasons.length
  ? html`<span>Revoking is not offered: rule ${i.rules.join(', ')} gives this access; change the rule to take it away.</span>`
  : html`<label><input type="radio" name="d-${i.id}" value="revoke"> Revoke</label>`}
<label for="c-${i.id}">Comment (optional)</label><textarea id="c-${i.id}" name="c-${i.id}" rows="1" maxlength="4000"></textarea></fieldset>`,
      );
    const body = html`${notice}<form method="post" action="/console/reviews/decisions"><input type="hidden" name="_csrf" value="${me.csrf}">
${campaigns.map(([id, name]) => {
  const list = items.filter((i) => i.campaignId === id);
  return html`<section class="card" aria-labelledby="rc-${id}"><h2 id="rc-${id}">${name}</h2><p>${list.length} item${list.length === 1 ? '' : 's'} waiting on you.</p>${rows(list)}</section>`;
})}
<button type="submit">Record my decisions</button></form>`;
    return page(reply, me, 'Reviews', body);
  });

  app.post<{ Body: Form }>('/reviews/decisions', async (request, reply) => {
    const acted = await acting(request, reply);
    if (!acted) return reply;
    const { me, form } = acted;
    const decisions = Object.entries(form)
      .filter(([k, v]) => k.startsWith('d-') && (v === 'keep' || v === 'revoke'))
      .map(([k, v]) => ({ itemId: k.slice(2), decision: v as 'keep' | 'revoke', comment: (form[`c-${k.slice(2)}`] ?? '').trim().slice(0, 4000) || undefined }));
    const back = html`<p><a href="/console/reviews">Back to reviews</a></p>`;
    if (decisions.some((d) => !UUID.test(d.itemId))) return page(reply.code(400), me, 'Reviews', errorCard('The form names an item that does not exist.', back));
    if (decisions.length === 0) return page(reply.code(400), me, 'Reviews', errorCard('Choose keep or revoke for at least one item.', back));
    const results = await decideReviewsAs({ db: app.db, temporal: app.temporal, log: request.log, kickOutbox: () => app.outbox.kick() }, { userId: me.userId, userName: me.userName }, decisions);
    const refused = results.filter((r) => !r.ok);
    if (refused.length === results.length) {
      const status = refused.every((r) => !r.ok && r.status === 403) ? 403 : 409;
      return page(reply.code(status), me, 'Reviews', errorCard(`No decision was recorded: ${refused.map((r) => (r.ok ? '' : r.message)).join('; ')}.`, back));
    }
    return reply.redirect(`/console/reviews?decided=${results.length - refused.length}&refused=${refused.length}`, 303);
  });
}
