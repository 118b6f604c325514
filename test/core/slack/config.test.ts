import t from 'tap';
import { loadGatewayConfig, loadWorkerConfig } from '../../../core/config.js';

const bot = 'xoxb-1-abc';

t.test('the Slack app is off without a bot token', async (t) => {
  t.equal(loadGatewayConfig({}).slack, undefined);
  t.throws(() => loadGatewayConfig({ SLACK_SIGNING_SECRET: 's3cret-value' }), { message: /^SLACK_BOT_TOKEN: is required/ });
});

t.test('the gateway needs the signing secret, unless Socket Mode', async (t) => {
  t.throws(() => loadGatewayConfig({ SLACK_BOT_TOKEN: bot }), { message: /^SLACK_SIGNING_SECRET: is required/ });
  t.match(loadGatewayConfig({ SLACK_BOT_TOKEN: bot, SLACK_APP_TOKEN: 'xapp-1-x' }).slack, { appToken: 'xapp-1-x', signingSecret: undefined });
  t.match(loadWorkerConfig({ SLACK_BOT_TOKEN: bot }).slack, { botToken: bot, apiUrl: 'https://slack.com/api/', identityTtlSeconds: 3600 }, 'the worker needs the bot token only');
});

t.test('malformed values name the variable and never echo a token', async (t) => {
  const err = t.throws(() => loadGatewayConfig({ SLACK_BOT_TOKEN: 'xoxq-very-secret', SLACK_SIGNING_SECRET: 's' })) as Error;
  t.match(err.message, /^SLACK_BOT_TOKEN: must be a bot token/);
  t.notMatch(err.message, 'very-secret');
  t.throws(() => loadGatewayConfig({ SLACK_BOT_TOKEN: bot, SLACK_APP_TOKEN: 'xoxb-wrong' }), { message: /^SLACK_APP_TOKEN: must be an app-level token/ });
  t.throws(() => loadWorkerConfig({ SLACK_BOT_TOKEN: bot, SLACK_TASK_CHANNELS: 'IT Support' }), { message: /^SLACK_TASK_CHANNELS: expected "group=channel id" pairs/ });
});

t.test('task channels by group, with a default', async (t) => {
  const cfg = loadWorkerConfig({ SLACK_BOT_TOKEN: bot, SLACK_TASK_CHANNELS: 'IT Support=C0123ABC, Data = C0456DEF,*=C0789' });
  t.same(cfg.slack?.taskChannels, { 'IT Support': 'C0123ABC', Data: 'C0456DEF', '*': 'C0789' });
  t.equal(loadWorkerConfig({ SLACK_BOT_TOKEN: bot, SLACK_API_URL: 'http://127.0.0.1:9/api' }).slack?.apiUrl, 'http://127.0.0.1:9/api/', 'the API URL ends with a slash');
});
