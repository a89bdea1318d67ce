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
//   node server.mjs --port 3001 --issuer http://127.0.0.1:8080 --audience tickets
//
// Tickets live in memory, keyed by the stable user id (SPEC §6: never by username or email,
// which may change). Every request that reaches the app is logged on stdout as one JSON line
// ({"seen": method, "path", "user_id"}), which the browser test reads to show what got through.
import express from 'express';
import crypto from 'node:crypto';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { createRemoteJWKSet, jwtVerify, errors } from 'jose';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const USAGE = 'usage: node server.mjs --issuer MAILCODE_PUBLIC_URL [--audience AUD] [--jwks-url URL] '
  + '[--port 3001] [--host 127.0.0.1]';

let opts;
try {
  opts = parseArgs({
    options: {
      port: { type: 'string', default: '3001' },
      host: { type: 'string', default: '127.0.0.1' },
      issuer: { type: 'string' },
      audience: { type: 'string' },
      'jwks-url': { type: 'string' },
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
  console.log(JSON.stringify({ listening: `http://${opts.host}:${actual}`, issuer, audience, jwks: jwksUrl.href }));
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
