/**
 * The cryptography of one-time download links.
 *
 * A link carries a random 32-byte token (base64url, 43 characters). The database keeps only
 * `sha256(token)`, to find the delivery, and the content encrypted with AES-256-GCM under a key
 * derived from the token with HKDF-SHA256. Whoever reads the database therefore holds neither the
 * link nor the means to decrypt, and the gateway can decrypt only while serving the link.
 *
 * The delivery's id is the GCM additional data, so ciphertext moved to another row does not decrypt.
 */
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';

const TOKEN_BYTES = 32;
/** Base64url of 32 bytes, without padding. */
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;
/** Fixed HKDF context: a key derived for anything else from the same token differs. */
const HKDF_INFO = 'scim-gateway delivery content v1';
const NONCE_BYTES = 12;

/** A fresh link token. */
export function newToken(): string {
  return randomBytes(TOKEN_BYTES).toString('base64url');
}

/** True when `token` has the shape of a token (anything else is not looked up at all). */
export function isWellFormedToken(token: string): boolean {
  if (!TOKEN_PATTERN.test(token)) return false;
  // The last character carries 2 unused bits; only one spelling of each token is accepted.
  return Buffer.from(token, 'base64url').toString('base64url') === token;
}

/** What the database stores to find a delivery by its token. */
export function tokenHash(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

function contentKey(token: string): Buffer {
  return Buffer.from(hkdfSync('sha256', Buffer.from(token, 'base64url'), Buffer.alloc(0), HKDF_INFO, 32));
}

export interface Sealed {
  ciphertext: Buffer;
  nonce: Buffer;
  authTag: Buffer;
}

/** Encrypts `content` for the delivery `id` under the key of `token`. */
export function seal(token: string, id: string, content: Uint8Array): Sealed {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', contentKey(token), nonce);
  cipher.setAAD(Buffer.from(id, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(content), cipher.final()]);
  return { ciphertext, nonce, authTag: cipher.getAuthTag() };
}

/** Decrypts what {@link seal} produced; throws when the token, id or any byte is wrong. */
export function open(token: string, id: string, sealed: Sealed): Buffer {
  const decipher = createDecipheriv('aes-256-gcm', contentKey(token), sealed.nonce);
  decipher.setAAD(Buffer.from(id, 'utf8'));
  decipher.setAuthTag(sealed.authTag);
  return Buffer.concat([decipher.update(sealed.ciphertext), decipher.final()]);
}
