/**
 * Errors of the admin API (/api), in the same JSON shape Fastify gives its own errors
 * (`{ statusCode, error, message }`), so clients see one format whoever raised the error.
 */
import { STATUS_CODES } from 'node:http';
import type { FastifyReply } from 'fastify';

export function sendApiError(reply: FastifyReply, status: number, message: string): FastifyReply {
  return reply.code(status).send({ statusCode: status, error: STATUS_CODES[status] ?? 'Error', message });
}
