#!/usr/bin/env node
// The tickets example (SPEC §6): an application API that never talks to mailcode's stores and
// never reimplements sessions. It learns who is signed in in one of two ways:
//
//   /tickets/api/*         forward authentication: nginx asks mailcode's GET /api/auth/check
//                          (auth_request) and passes X-Mailcode-User-Id and X-Mailcode-Username;
//                          a request reaches this app only when mailcode said yes. Revocation
//                          and sign-out take effect on the next request.
//   /tickets/jwt/tickets   Authorization: Bearer <access token from POST /api/token>, verified
//                          here with jose against mailcode's /.well-known/jwks.json (iss, aud,
//                          exp, ES256). No call to mailcode per request, so a token stays valid
//                          until its exp even after its session ended (SPEC §6 says so plainly).
//
// This process must be reachable only through nginx (it listens on loopback): it believes the
// X-Mailcode-* headers because nginx sets them and removes any the client sent.
//
//   MAILCODE_WEBHOOK_SECRET_FILE=data/webhook-secret \
//     node server.mjs --port 3001 --issuer http://127.0.0.1:8080 --audience tickets
//
// It also hears from mailcode without being asked (SPEC §7): POST /hooks/mailcode receives
// mailcode's signed webhooks (mailcode --webhook-url http://127.0.0.1:3001/hooks/mailcode),
// verified with the standardwebhooks package, and a `user.created` makes the app's own profile
// row for the new user; GET /tickets/api/profile answers it. That route is not behind nginx's
// auth_request: mailcode calls the app directly, and the signature is what the app believes.
//
// Tickets and profiles live in memory, keyed by the stable user id (SPEC §6: never by username
// or email, which may change). Every request that reaches the app is logged on stdout as one
// JSON line ({"seen": method, "path", "user_id"}), and every webhook as one more ({"webhook":
// type, "id", "user_id", "session_id", "result"}), which the browser test reads to show what got
// through and what the app did with it.
import express from 'express';
import crypto from 'node:crypto';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import fs from 'node:fs';
import { createRemoteJWKSet, jwtVerify, errors } from 'jose';
import { Webhook, WebhookVerificationError } from 'standardwebhooks';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const USAGE = 'usage: node server.mjs --issuer MAILCODE_PUBLIC_URL [--audience AUD] [--jwks-url URL] '
  + '[--port 3001] [--host 127.0.0.1] [--webhook-secret-file PATH (or env MAILCODE_WEBHOOK_SECRET_FILE)]';

let opts;
try {
  opts = parseArgs({
    options: {
      port: { type: 'string', default: '3001' },
      host: { type: 'string', default: '127.0.0.1' },
      issuer: { type: 'string' },
      audience: { type: 'string' },
      'jwks-url': { type: 'string' },
      'webhook-secret-file': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  }).values;
} catch (err) {
  console.error(`${err.message}\n${USAGE}`);
  process.exit(2);
}
if (opts.help) {
  console.log(USAGE);
  process.exit(0);
}
const port = Number(opts.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`--port must be a port number, got ${JSON.stringify(opts.port)}`);
  process.exit(2);
}
// The issuer is mailcode's --public-url exactly (the `iss` of its tokens): an origin, no slash.
let issuer;
try {
  issuer = new URL(opts.issuer ?? '').origin;
  if (issuer === 'null') throw new Error('not an origin');
} catch {
  console.error(`--issuer must be mailcode's --public-url, like http://127.0.0.1:8080\n${USAGE}`);
  process.exit(2);
}
// mailcode's default --token-audience is its public URL.
const audience = opts.audience ?? issuer;
const jwksUrl = new URL(opts['jwks-url'] ?? `${issuer}/.well-known/jwks.json`);
// jose caches the key set and fetches it again when a token names an unknown kid (a key
// rotation, docs/operations.md), at most every 30 s (its cooldown); every fetch is bounded.
const JWKS = createRemoteJWKSet(jwksUrl, { timeoutDuration: 5_000 });

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const tickets = new Map(); // user id -> [{id, title, created_at, created_by}]
const profiles = new Map(); // user id -> {user_id, username, created_at}, made by user.created
// The webhook-ids already handled (docs/integration.md, "Idempotency": delivery is at least
// once, so the same event may come again; it must change nothing the second time). A real app
// keeps them in a table with a unique column for a couple of days; this one keeps them in memory.
const handledHooks = new Map(); // webhook-id -> {type, user_id, session_id, timestamp}

// mailcode's webhook secret: the one `whsec_…` line of --webhook-secret-file, the same file
// mailcode signs with. mailcode writes it on its first start with a --webhook-url, which may come
// after this app's start: until the file exists it is looked for again on each delivery, and
// the delivery is answered 503, which mailcode retries (SPEC §7), so nothing is lost meanwhile.
const secretFile = opts['webhook-secret-file'] ?? process.env.MAILCODE_WEBHOOK_SECRET_FILE ?? null;
let webhook = null;
function webhookVerifier() {
  if (webhook || !secretFile) return webhook;
  let line;
  try {
    line = fs.readFileSync(secretFile, 'utf8').trim();
  } catch (err) {
    if (err.code !== 'ENOENT') console.error(`webhook secret ${secretFile}: ${err.message}`);
    return null;
  }
  try {
    webhook = new Webhook(line); // takes the line as it is, whsec_ prefix included
  } catch (err) {
    console.error(`webhook secret ${secretFile}: not a whsec_ secret (${err.message})`);
    return null;
  }
  return webhook;
}

function envelope(res, status, code, msg, data = null) {
  res.status(status).json({ code, msg, data });
}

// mailcode percent-encodes a header value that is not plain ASCII (SPEC §6).
function headerText(value) {
  if (typeof value !== 'string') return null;
  try { return decodeURIComponent(value); } catch { return value; }
}

// Forward authentication: nginx has already asked mailcode; the user id header is the answer.
// Without it the proxy is misconfigured (or bypassed): refuse rather than guess.
function forwardAuth(req, res, next) {
  const id = req.get('x-mailcode-user-id');
  if (!id || !UUID.test(id)) {
    envelope(res, 401, 'NOT_LOGGED_IN', 'No user from the proxy: sign in first.');
    return;
  }
  req.user = { id, username: headerText(req.get('x-mailcode-username')) };
  next();
}

// Local verification of an access token (SPEC §6): signature against the published keys, and
// iss, aud and exp checked by jose. The algorithm is pinned: a token never picks its own.
async function bearerAuth(req, res, next) {
  const m = /^Bearer ([A-Za-z0-9._~+/=-]+)$/i.exec(req.get('authorization') ?? '');
  res.set('WWW-Authenticate', 'Bearer');
  if (!m) {
    envelope(res, 401, 'TOKEN_MISSING', 'Send Authorization: Bearer <access token from POST /api/token>.');
    return;
  }
  try {
    const { payload } = await jwtVerify(m[1], JWKS, { issuer, audience, algorithms: ['ES256'] });
    if (typeof payload.sub !== 'string' || !UUID.test(payload.sub)) throw new errors.JWTClaimValidationFailed('sub is not a user id', payload, 'sub');
    req.user = { id: payload.sub, username: payload.preferred_username ?? null, exp: payload.exp };
  } catch (err) {
    const expired = err instanceof errors.JWTExpired;
    res.set('WWW-Authenticate', `Bearer error="invalid_token"`);
    envelope(res, 401, expired ? 'TOKEN_EXPIRED' : 'TOKEN_INVALID',
      expired ? 'The access token has expired: ask POST /api/token for a new one.' : 'The access token is not valid here.',
      { reason: err.code ?? 'ERR_UNKNOWN' });
    return;
  }
  next();
}

function list(user) {
  return { user: { id: user.id, username: user.username }, tickets: tickets.get(user.id) ?? [] };
}

const app = express();
app.disable('x-powered-by');
app.use((req, res, next) => {
  console.log(JSON.stringify({ seen: req.method, path: req.path, user_id: req.get('x-mailcode-user-id') ?? null }));
  next();
});

// mailcode's webhooks (SPEC §7). The signature covers the bytes mailcode sent, so this route
// (and only this one) takes the body raw, whatever its content type, and parses it only once it
// is verified. Answers: 204 handled (or handled before: same webhook-id; or signed but not an
// event this app knows), 401 not signed with the secret (or too old: the library allows
// 5 minutes), 503 no secret yet. mailcode retries anything but a 2xx (SPEC §7).
app.post('/hooks/mailcode', express.raw({ type: () => true, limit: '64kb' }), (req, res) => {
  const id = req.get('webhook-id') ?? null;
  const log = (result, event = null) => console.log(JSON.stringify({
    webhook: event?.type ?? null, id, user_id: event?.data?.user_id ?? null,
    session_id: event?.data?.session_id ?? null, result,
  }));
  const wh = webhookVerifier();
  if (!wh) {
    log('no_secret');
    envelope(res, 503, 'WEBHOOK_SECRET_MISSING', secretFile
      ? 'The webhook secret file does not exist yet.' : 'No webhook secret configured (MAILCODE_WEBHOOK_SECRET_FILE).');
    return;
  }
  let event;
  try {
    event = wh.verify(Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0), req.headers);
  } catch (err) {
    if (err instanceof SyntaxError) { // signed, but not JSON: nothing a retry would change
      log('ignored');
      res.status(204).end();
      return;
    }
    if (!(err instanceof WebhookVerificationError)) throw err;
    log('refused');
    envelope(res, 401, 'BAD_SIGNATURE', 'Not signed with the webhook secret.');
    return;
  }
  const data = event?.data;
  if (typeof event?.type !== 'string' || typeof data?.user_id !== 'string' || !UUID.test(data.user_id)) {
    log('ignored', event);
    res.status(204).end();
    return;
  }
  // After the signature, so a forged request cannot use up an id that a genuine one will bring.
  if (handledHooks.has(id)) {
    log('duplicate', event);
    res.status(204).end();
    return;
  }
  let result = 'recorded';
  if (event.type === 'user.created') {
    // Keyed by user id: another delivery of the same account (another id, e.g. a second URL
    // of mailcode's) keeps the row it finds.
    if (profiles.has(data.user_id)) {
      result = 'exists';
    } else {
      profiles.set(data.user_id, { user_id: data.user_id, username: data.username, created_at: event.timestamp });
      result = 'profile_created';
    }
  }
  // user.disabled, session.ended and the rest are only recorded: a real app would end its own
  // caches or jobs for that user or session here.
  handledHooks.set(id, { type: event.type, user_id: data.user_id, session_id: data.session_id ?? null, timestamp: event.timestamp });
  log(result, event);
  res.status(204).end();
});

app.get('/tickets/api/profile', forwardAuth, (req, res) => {
  const profile = profiles.get(req.user.id);
  if (!profile) {
    envelope(res, 404, 'PROFILE_NOT_FOUND', 'No profile yet: mailcode\'s user.created webhook has not arrived.');
    return;
  }
  envelope(res, 200, 'OK', 'Your profile.', { profile });
});

app.get('/tickets/api/tickets', forwardAuth, (req, res) => {
  envelope(res, 200, 'OK', 'Your tickets.', list(req.user));
});

app.post('/tickets/api/tickets', forwardAuth, express.json({ limit: '4kb' }), (req, res) => {
  const title = typeof req.body?.title === 'string' ? req.body.title.trim() : '';
  if (title.length < 1 || title.length > 200) {
    envelope(res, 400, 'INVALID_INPUT', 'A ticket needs a title of 1 to 200 characters.', { field: 'title' });
    return;
  }
  const ticket = { id: crypto.randomUUID(), title, created_at: new Date().toISOString(), created_by: req.user.username };
  const mine = tickets.get(req.user.id) ?? [];
  mine.push(ticket);
  tickets.set(req.user.id, mine);
  envelope(res, 201, 'TICKET_CREATED', 'Ticket created.', { ticket });
});

app.get('/tickets/jwt/tickets', bearerAuth, (req, res) => {
  envelope(res, 200, 'OK', 'Your tickets (access token).', { ...list(req.user), token_exp: req.user.exp });
});

// The page: public static files; it asks the API who is signed in.
app.use('/tickets', express.static(path.join(HERE, 'public'), { index: 'index.html', maxAge: 0 }));

app.use((req, res) => envelope(res, 404, 'NOT_FOUND', 'Nothing here.'));
// A body that is not JSON, or too large: the envelope, never a stack trace.
app.use((err, req, res, _next) => {
  if (err.type === 'entity.too.large') {
    envelope(res, 413, 'PAYLOAD_TOO_LARGE', 'The body is too large.');
  } else if (err.type === 'entity.parse.failed') {
    envelope(res, 400, 'INVALID_JSON', 'The body is not valid JSON.');
  } else {
    console.error(err);
    envelope(res, 500, 'INTERNAL', 'Something went wrong.');
  }
});

const server = app.listen(port, opts.host, () => {
  const { port: actual } = server.address();
  console.log(JSON.stringify({ listening: `http://${opts.host}:${actual}`, issuer, audience, jwks: jwksUrl.href,
    webhook_secret_file: secretFile, webhook_secret: webhookVerifier() ? 'loaded' : 'not yet' }));
});
server.on('error', (err) => {
  console.error(err.code === 'EADDRINUSE' ? `port ${port} is in use; pick another with --port` : err.message);
  process.exit(1);
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
