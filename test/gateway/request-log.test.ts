/**
 * The request logger that becomes a pino child on its first line: the lines it writes are the
 * lines a child made up front would have written.
 */
import t from 'tap';
import pino from 'pino';
import { RequestLog } from '../../gateway/request-log.js';

function collected(level = 'info') {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level, base: undefined, timestamp: false }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, lines };
}

t.test('bindings given before and after the first line reach the lines written after them', async (t) => {
  const { logger, lines } = collected();
  const log = new RequestLog(logger, { reqId: 'req-1' });
  log.bind({ token: 'okta' });
  log.warn({ attribute: 'x' }, 'first');
  log.bind({ step: 2 });
  log.info('second');
  t.same(lines, [
    { level: 40, reqId: 'req-1', token: 'okta', attribute: 'x', msg: 'first' },
    { level: 30, reqId: 'req-1', token: 'okta', step: 2, msg: 'second' },
  ]);
});

t.test('levels: lines below the level are dropped, and a route level of its own applies', async (t) => {
  const { logger, lines } = collected('info');
  const log = new RequestLog(logger, { reqId: 'req-2' });
  log.debug('hidden');
  log.trace('hidden');
  t.equal(log.level, 'info');
  t.ok(log.isLevelEnabled('info'));
  t.notOk(log.isLevelEnabled('debug'));
  t.same(lines, [], 'nothing below info');

  const quiet = new RequestLog(logger, { reqId: 'req-3' }, { level: 'warn' });
  t.equal(quiet.level, 'warn', "the route's level");
  t.notOk(quiet.isLevelEnabled('info'));
  quiet.info('dropped');
  quiet.error('kept');
  t.same(lines, [{ level: 50, reqId: 'req-3', msg: 'kept' }]);
});

t.test('a child of the request logger carries its bindings and its own', async (t) => {
  const { logger, lines } = collected();
  const log = new RequestLog(logger, { reqId: 'req-4' });
  log.bind({ token: 'entra' });
  log.child({ part: 'bulk' }).info('inner');
  log.info('outer');
  t.same(lines, [
    { level: 30, reqId: 'req-4', token: 'entra', part: 'bulk', msg: 'inner' },
    { level: 30, reqId: 'req-4', token: 'entra', msg: 'outer' },
  ]);
});
