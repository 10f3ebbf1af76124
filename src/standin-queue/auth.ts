/**
 * Hawk authentication as the queue sees it: id = clientId, key = accessToken,
 * sha256, signature bound to the Host header; a request without credentials
 * gets the deployment's anonymous scopes. Authenticated clients hold those as
 * well, as every Taskcluster client implicitly has the `anonymous` role.
 */
import type { IncomingMessage } from 'node:http';
import hawk from 'hawk';
import { satisfies } from './scopes.js';

export interface StandinClient {
  accessToken: string;
  scopes: string[];
}

export type AuthResult =
  | { status: 'auth-success'; clientId: string; scopes: string[] }
  | { status: 'no-auth'; scopes: string[] }
  | { status: 'auth-failed'; message: string };

interface BoomLike {
  isBoom?: boolean;
  output?: { payload?: { error?: string; message?: string } };
  message?: string;
}

/** The message the queue gives for a Hawk failure: Boom's error name and its message. */
function hawkFailure(err: unknown): string {
  const boom = err as BoomLike;
  if (boom?.isBoom && boom.output?.payload) {
    const { error, message } = boom.output.payload;
    return message ? `${error}: ${message}` : String(error);
  }
  return boom?.message ?? String(err);
}

/** Decodes Taskcluster's `ext` (base64 JSON) and applies `authorizedScopes`; certificates are not supported. */
function applyExt(ext: string | undefined, scopes: string[]): { scopes: string[] } | { message: string } {
  if (!ext) return { scopes };
  let parsed: { certificate?: unknown; authorizedScopes?: unknown };
  try {
    parsed = JSON.parse(Buffer.from(ext, 'base64').toString('utf8')) as typeof parsed;
  } catch {
    return { message: 'Failed to parse ext' };
  }
  if (parsed.certificate !== undefined) {
    return { message: 'ext.certificate: temporary credentials are not supported by the stand-in queue' };
  }
  if (parsed.authorizedScopes === undefined) return { scopes };
  const authorized = parsed.authorizedScopes;
  if (!Array.isArray(authorized) || !authorized.every((s) => typeof s === 'string')) {
    return { message: 'ext.authorizedScopes must be an array of valid scopes' };
  }
  // SECURITY: restricted credentials may only narrow what the client holds, never widen it.
  if (!satisfies(scopes, { AllOf: authorized as string[] })) {
    return { message: 'ext.authorizedScopes oversteps your scopes' };
  }
  return { scopes: authorized as string[] };
}

export interface AuthenticateInput {
  req: IncomingMessage;
  /** The request body as received, for a payload hash the client signed. */
  body: string;
  clients: ReadonlyMap<string, StandinClient>;
  anonymousScopes: readonly string[];
}

/** Authenticates one request by its Authorization header or a `bewit` query parameter. */
export async function authenticate({ req, body, clients, anonymousScopes }: AuthenticateInput): Promise<AuthResult> {
  const hasBewit = /[?&]bewit=/.test(req.url ?? '');
  if (req.headers.authorization && hasBewit) {
    return {
      status: 'auth-failed',
      message: "Cannot use two authentication schemes at once this request has both bewit in querystring and 'authorization' header",
    };
  }
  if (!req.headers.authorization && !hasBewit) return { status: 'no-auth', scopes: [...anonymousScopes] };

  // SECURITY: the accessToken is only ever handed to hawk as the key; it is never logged or echoed.
  const credentialsFor = (id: string): hawk.server.Credentials => {
    const client = clients.get(id);
    return client ? ({ id, key: client.accessToken, algorithm: 'sha256', user: id } as hawk.server.Credentials) : (undefined as never);
  };
  try {
    let clientId: string;
    let ext: string | undefined;
    if (hasBewit) {
      // hawk 9 answers {credentials, attributes} here, whatever its type declarations say.
      const r = (await hawk.server.authenticateBewit(req, credentialsFor, {})) as unknown as { credentials: { id: string }; attributes: { ext?: string } };
      clientId = r.credentials.id;
      ext = r.attributes.ext || undefined;
    } else {
      const r = await hawk.server.authenticate(req, credentialsFor, {});
      clientId = (r.credentials as unknown as { id: string }).id;
      ext = r.artifacts.ext || undefined;
      if (typeof r.artifacts.hash === 'string') {
        const computed = hawk.crypto.calculatePayloadHash(body, 'sha256', String(req.headers['content-type'] ?? ''));
        if (computed !== r.artifacts.hash) {
          return { status: 'auth-failed', message: `Invalid payload hash: ${r.artifacts.hash}\nComputed payload hash: ${computed}` };
        }
      }
    }
    const client = clients.get(clientId);
    if (!client) return { status: 'auth-failed', message: `Client with clientId '${clientId}' not found` };
    const held = [...new Set([...client.scopes, ...anonymousScopes])];
    const restricted = applyExt(ext, held);
    if ('message' in restricted) return { status: 'auth-failed', message: restricted.message };
    return { status: 'auth-success', clientId, scopes: restricted.scopes };
  } catch (err) {
    const failed = err as { artifacts?: { id?: string }; bewit?: { id?: string } };
    const id = failed.artifacts?.id ?? failed.bewit?.id;
    if (id !== undefined && !clients.has(id)) return { status: 'auth-failed', message: `Client with clientId '${id}' not found` };
    return { status: 'auth-failed', message: hawkFailure(err) };
  }
}
