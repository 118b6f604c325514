/**
 * The certificate common name of a user. It names the certificate, the key and the ccd file, and is
 * passed to easyrsa and to the management interface, so it is held to a strict character set: lower
 * case letters, digits, `.`, `_`, `@` and `-`, starting with a letter or digit (never an option), at
 * most 64 characters (the X.509 upper bound for a CN). OpenVPN uses these characters in ccd file
 * names as they are.
 */
import { PermanentError, type AccountInput } from '@scim-gateway/connector-sdk';

export type CommonNameSource = 'userName' | 'email' | 'userId' | 'externalId';

export const COMMON_NAME_PATTERN = /^[a-z0-9][a-z0-9._@-]{0,63}$/;

/**
 * Maps a directory value onto the character set: lower case, accents dropped, every run of other
 * characters replaced by one `_`, leading punctuation dropped. Distinct values may map to the same
 * name (`a+b@x` and `a_b@x`); the first to be provisioned holds it.
 */
export function sanitizeCommonName(value: string): string {
  return value
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9._@-]+/g, '_')
    .replace(/^[^a-z0-9]+/, '')
    .slice(0, 64);
}

export function commonNameFor(input: AccountInput, source: CommonNameSource, op: string): string {
  const value = input[source];
  if (!value) throw new PermanentError(`openvpn: ${op}: user ${input.userId} has no ${source}, which this connector uses as the certificate's common name`, 'invalidInput');
  const cn = sanitizeCommonName(value);
  if (!COMMON_NAME_PATTERN.test(cn)) {
    throw new PermanentError(`openvpn: ${op}: the ${source} of user ${input.userId} gives no usable certificate common name`, 'invalidInput');
  }
  return cn;
}

/** A remote id handed back by the engine, checked before it reaches a file name or a command. */
export function checkCommonName(remoteId: string, op: string): string {
  if (!COMMON_NAME_PATTERN.test(remoteId)) {
    throw new PermanentError(`openvpn: ${op}: ${JSON.stringify(remoteId.slice(0, 80))} is not a common name this connector manages (a-z, 0-9, . _ @ -, at most 64)`, 'invalidInput');
  }
  return remoteId;
}
