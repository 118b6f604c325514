/**
 * A stand-in for the service that forwards delivery notices to users (an email or chat relay): an
 * HTTP server on 127.0.0.1 that verifies each notice's signature like a careful receiver, refuses a
 * notice id it has seen, keeps what it accepted, and answers failures the test programs.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SIGNATURE_HEADER, TIMESTAMP_HEADER, verifySignature } from '@scim-gateway/connector-sdk/signature';
import type { DeliveryNotice } from '../../../core/delivery/index.js';

interface Teardown {
  teardown(fn: () => void | Promise<void>): void;
}

export interface NoticeReceiver {
  url: string;
  /** Notices accepted (signature valid, id new), in order. */
  notices: DeliveryNotice[];
  /** Requests refused because their signature did not verify. */
  rejected: number;
  /** Answers for the next requests, consumed one per request, before any check. */
  failNext: Array<{ status: number; retryAfter?: string }>;
}

export async function startNoticeReceiver(t: Teardown, secret: string): Promise<NoticeReceiver> {
  const seen = new Set<string>();
  const receiver: NoticeReceiver = { url: '', notices: [], rejected: 0, failNext: [] };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const answer = (status: number, body: unknown, headers: Record<string, string> = {}) => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify(body));
      };
      const failure = receiver.failNext.shift();
      // A receiver that echoes what it got: errors made from its answer would carry the link.
      if (failure) return answer(failure.status, { error: 'failing on purpose', echo: raw.toString('utf8') }, failure.retryAfter ? { 'retry-after': failure.retryAfter } : {});
      if (req.method !== 'POST' || req.headers['content-type'] !== 'application/json') return answer(415, { error: 'expected a JSON POST' });
      const verdict = verifySignature(secret, raw, req.headers[TIMESTAMP_HEADER] as string | undefined, req.headers[SIGNATURE_HEADER] as string | undefined);
      if (!verdict.ok) {
        receiver.rejected++;
        return answer(401, { error: verdict.reason });
      }
      const notice = JSON.parse(raw.toString('utf8')) as DeliveryNotice;
      if (seen.has(notice.id)) return answer(409, { error: 'notice already received' });
      seen.add(notice.id);
      receiver.notices.push(notice);
      answer(202, { accepted: notice.id });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/notices`;
  return receiver;
}
