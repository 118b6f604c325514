/**
 * The one place SCIM errors are rendered (RFC 7644 §3.12). Everything thrown under /scim/v2 ends
 * here: ScimErrors keep their status and scimType; framework errors (bad JSON, body too large,
 * wrong media type, schema validation) are translated; anything else is a 500 whose detail is
 * logged and never sent.
 */
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { ConnectionError, FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { AuthError } from './auth.js';
import { SCIM_CONTENT_TYPE, ScimError, scimErrorBody, type ScimErrorBody } from '../../core/scim/errors.js';

export function toScimError(err: FastifyError | Error): ScimError | undefined {
  if (err instanceof ScimError) return err;
  if (err instanceof AuthError) return new ScimError(err.statusCode, err.message);
  const fe = err as FastifyError;
  switch (fe.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ScimError(413, 'the request body is larger than the server accepts');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ScimError(415, 'send the body as application/scim+json or application/json');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new ScimError(400, 'the request body is empty', 'invalidSyntax');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new ScimError(400, 'the Content-Length header does not match the body', 'invalidSyntax');
    case 'FST_ERR_BAD_URL':
      return new ScimError(400, 'the URL has a %-escape that does not decode to UTF-8');
    case 'FST_ERR_MAX_PARAM_LENGTH':
      // No SCIM id is anywhere near the router's limit on a path segment.
      return new ScimError(414, 'a path segment of the URL is longer than the server accepts');
    default:
      break;
  }
  if (fe.validation) {
    // A body that is not even a JSON object is a syntax problem; anything finer is a bad value.
    const notAnObject = fe.validationContext === 'body' && fe.validation.some((v) => v.instancePath === '' && v.keyword === 'type');
    return new ScimError(400, `invalid request: ${fe.message}`, notAnObject ? 'invalidSyntax' : 'invalidValue');
  }
  if (err instanceof SyntaxError || fe.code === 'FST_ERR_CTP_INVALID_JSON_BODY') {
    return new ScimError(400, `the request body is not valid JSON: ${err.message}`, 'invalidSyntax');
  }
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return new ScimError(fe.statusCode, fe.message);
  }
  return undefined;
}

export function scimErrorHandler(err: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const scimErr = toScimError(err);
  let body: ScimErrorBody;
  if (scimErr) {
    if (scimErr.status >= 500) request.log.error({ err }, 'SCIM request failed');
    body = scimErrorBody(scimErr.status, scimErr.detail, scimErr.scimType);
    if (scimErr.status === 401) reply.header('www-authenticate', 'Bearer realm="scim"');
  } else {
    request.log.error({ err }, 'SCIM request failed');
    body = scimErrorBody(500, 'internal server error');
  }
  return reply.code(Number(body.status)).type(SCIM_CONTENT_TYPE).send(body);
}

/** Whether a request URL is under the SCIM service provider (any case, as canonicalScimUrl accepts). */
function isScimUrl(url: string): boolean {
  return /^\/scim\/v2(?:[/?#]|$)/i.test(url);
}

/**
 * Fastify's `frameworkErrors` option: errors the router raises before any route or plugin sees the
 * request (a URL that does not decode, a path segment over the length limit). Under /scim/v2 they
 * are SCIM errors like any other; elsewhere the answer is Fastify's usual JSON.
 */
export function frameworkErrorHandler(err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  if (isScimUrl(request.raw.url ?? '')) {
    scimErrorHandler(err, request, reply);
    return;
  }
  const statusCode = typeof err.statusCode === 'number' ? err.statusCode : 400;
  void reply.code(statusCode).send({ error: STATUS_CODES[statusCode] ?? 'Error', code: err.code, message: err.message, statusCode });
}

/**
 * Fastify's `clientErrorHandler` option: requests Node's HTTP parser refuses before Fastify sees
 * them, above all a request line and headers over Node's size limit (431). When the bytes received
 * start with a request line under /scim/v2 the answer is a SCIM error; otherwise (or when the
 * request line was not in the bytes Node kept) it is what Fastify answers by default.
 */
export function clientErrorHandler(err: ConnectionError, socket: Socket): void {
  // A reset connection has nobody left to answer.
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, message] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'the request line and headers are larger than the server accepts']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'the request was not received in time']
        : [400, 'the request is not valid HTTP'];
  // Node sets rawPacket to the bytes it was parsing (typed by Fastify as their JSON form).
  const raw: unknown = err.rawPacket;
  const requestLine = Buffer.isBuffer(raw) ? raw.subarray(0, 64).toString('latin1') : '';
  const scim = /^[A-Za-z]+ \/scim\/v2(?:[/?# ]|$)/i.test(requestLine);
  const body = JSON.stringify(scim ? scimErrorBody(status, message) : { error: STATUS_CODES[status], message, statusCode: status });
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        `Content-Type: ${scim ? SCIM_CONTENT_TYPE : 'application/json; charset=utf-8'}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(err);
}
