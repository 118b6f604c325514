import t from 'tap';
import { editDistance, formatDuration, parseDuration, understand } from '../../../core/slack/matching.js';

const policies = [
  { name: 'vpn', displayName: 'VPN', aliases: ['vpn-profile'] },
  { name: 'github-eng', displayName: 'GitHub engineering team', aliases: ['github eng team'] },
  { name: 'github-admins', displayName: 'GitHub admins', aliases: [] },
  { name: 'security-tools', displayName: 'Security tools', aliases: ['sectools'] },
];

t.test('the policy named by name, alias or display name, whatever the case', async (t) => {
  t.equal(understand('give me access to vpn', policies).policy?.name, 'vpn');
  t.equal(understand('Give me access to the VPN please', policies).policy?.name, 'vpn');
  t.equal(understand('sectools', policies).policy?.name, 'security-tools');
  t.equal(understand('I need the github eng team', policies).policy?.name, 'github-eng', 'an alias of several words');
  t.equal(understand('GitHub Engineering Team for a week', policies).policy?.name, 'github-eng', 'the display name');
});

t.test('small typos are forgiven; short words must be exact', async (t) => {
  t.equal(understand('access to securty tools', policies).policy?.name, 'security-tools', 'one letter missing');
  t.equal(understand('github admnis', policies).policy?.name, 'github-admins', 'two letters swapped');
  const none = understand('give me vpm', policies);
  t.equal(none.policy, undefined, 'a three-letter word is not guessed');
  t.same(none.choices, []);
});

t.test('ambiguous words are a choice', async (t) => {
  const u = understand('github please', policies);
  t.equal(u.policy, undefined);
  t.same(u.choices.map((p) => p.name).sort(), ['github-admins', 'github-eng']);
});

t.test('duration and justification', async (t) => {
  const u = understand('I need the github eng team for 2 days to debug the release', policies);
  t.equal(u.policy?.name, 'github-eng');
  t.equal(u.durationSeconds, 2 * 86_400);
  t.equal(u.justification, 'debug the release');
  const v = understand('VPN for 3h because Incident #42.', policies);
  t.equal(v.durationSeconds, 3 * 3600);
  t.equal(v.justification, 'Incident #42', "the person's own spelling is kept");
  const w = understand('vpn permanently so that I can work from home', policies);
  t.ok(w.permanent);
  t.equal(w.justification, 'I can work from home');
  t.equal(understand('give me access to vpn', policies).justification, undefined, '"to" before the resource is not a reason');
  t.equal(understand('vpn for a couple of days', policies).durationSeconds, 2 * 86_400);
});

t.test('durations typed in the form', async (t) => {
  t.same(parseDuration('2 days'), { seconds: 172_800 });
  t.same(parseDuration('36h'), { seconds: 129_600 });
  t.same(parseDuration('8'), { seconds: 28_800 }, 'a bare number is hours');
  t.same(parseDuration('permanent'), { permanent: true });
  t.equal(parseDuration('soon'), undefined);
  t.equal(parseDuration('2 days and a bit'), undefined, 'nothing beyond the duration');
  t.equal(formatDuration(172_800), '2 days');
  t.equal(formatDuration(3600), '1 hour');
  t.equal(formatDuration(5400), '90 minutes');
  t.equal(editDistance('abcd', 'abdc'), 1);
});
