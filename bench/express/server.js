// Baseline for bench/run: the classic Node stack that mailcode replaces, written the way its
// tutorials wire it: Express 5 + express-session + connect-redis + node-redis + nodemailer,
// argon2id (npm `argon2`, 19 MiB, 2 iterations, 1 lane) for passwords. Same three routes, the
// same JSON shape and the same cookie (`mailcode_sid`, HttpOnly, SameSite=Lax, Path=/) as mailcode.
// One Node process, as the classic stack is deployed.
//
// Mail: handed to nodemailer's pooled SMTP transport without awaiting delivery (the request does
// not wait for SMTP, like mailcode's queue; unlike it, the queue is in memory, not durable).
//
// Environment (set by bench/run): PORT, REDIS_URL, SMTP_PORT, SESSION_SECRET,
// BENCH_USERS=name:email:password[,...] (hashed at start; users are kept in memory).
'use strict';

const crypto = require('node:crypto');
const express = require('express');
const session = require('express-session');
const { RedisStore } = require('connect-redis');
const { createClient } = require('redis');
const nodemailer = require('nodemailer');
const argon2 = require('argon2');

const ARGON = { type: argon2.argon2id, memoryCost: 19456, timeCost: 2, parallelism: 1 };
const CODE_TTL_MS = 10 * 60 * 1000;
const MAX_ATTEMPTS = 5;
const SECRET = process.env.SESSION_SECRET || crypto.randomBytes(32).toString('hex');

function answer(res, status, code, msg, data) {
  res.set('Cache-Control', 'no-store');
  res.status(status).json({ code, msg, data: data === undefined ? null : data });
}

function validEmail(e) {
  return typeof e === 'string' && e.length <= 254 && e.split('@').length === 2 &&
    !e.startsWith('@') && !e.endsWith('@') && !/[\s\x00-\x1f\x7f]/.test(e);
}

function codeMac(email, code) {
  return crypto.createHmac('sha256', SECRET).update(email + '\0' + code).digest('hex');
}

function ctEqual(a, b) {
  const x = Buffer.from(String(a));
  const y = Buffer.from(String(b));
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}

async function main() {
  const redis = createClient({ url: process.env.REDIS_URL || 'redis://127.0.0.1:6379' });
  redis.on('error', (err) => console.error('redis:', err.message));
  await redis.connect();

  // One argon2id hash per distinct password (the benchmark's users share one), so that start-up
  // does not take a hash per user; verifying costs the same either way.
  const users = new Map();
  const hashes = new Map();
  for (const spec of (process.env.BENCH_USERS || '').split(',').filter(Boolean)) {
    const [name, email, ...rest] = spec.split(':');
    const pw = rest.join(':');
    if (!hashes.has(pw)) hashes.set(pw, await argon2.hash(pw, ARGON));
    users.set(name.toLowerCase(), { username: name, email: email.toLowerCase(), hash: hashes.get(pw) });
  }
  const dummyHash = await argon2.hash('not a password of anyone', ARGON);

  const mailer = nodemailer.createTransport({
    host: '127.0.0.1', port: Number(process.env.SMTP_PORT || 25), secure: false,
    ignoreTLS: true, pool: true, maxConnections: 4,
  });

  const app = express();
  app.disable('x-powered-by');
  app.use(express.json({ limit: '16kb' }));
  app.use(session({
    store: new RedisStore({ client: redis, prefix: 'sess:' }),
    name: 'mailcode_sid',
    secret: SECRET,
    resave: false,
    saveUninitialized: false,
    cookie: { httpOnly: true, sameSite: 'lax', secure: false, path: '/', maxAge: 30 * 60 * 1000 },
  }));

  app.post('/api/login/email-code', (req, res) => {
    const email = String((req.body && req.body.email) || '').trim().toLowerCase();
    if (!validEmail(email)) return answer(res, 400, 'INVALID_EMAIL', 'invalid email');
    const code = String(crypto.randomInt(0, 1000000)).padStart(6, '0');
    const now = Date.now();
    req.session.code = { email, mac: codeMac(email, code), expiresAt: now + CODE_TTL_MS, attempts: 0 };
    mailer.sendMail({
      from: 'bench <no-reply@localhost>', to: email,
      subject: `${code} is your sign-in code`, text: `Your code is ${code}. It expires in 10 minutes.`,
    }).catch((err) => console.error('mail:', err.message));
    answer(res, 200, 'CODE_SENT', 'code sent', {
      expires_at: new Date(now + CODE_TTL_MS).toISOString(),
      resend_available_at: new Date(now + 60000).toISOString(),
      delivery: 'queued',
    });
  });

  app.post('/api/login/get-token', async (req, res) => {
    const b = req.body || {};
    const email = String(b.email || '').trim().toLowerCase();
    const pending = req.session.code;
    if (!pending) return answer(res, 401, 'NO_SESSION', 'no code was sent to this session');
    if (pending.email !== email) return answer(res, 401, 'CODE_INVALID', 'wrong code');
    if (pending.expiresAt < Date.now()) return answer(res, 401, 'CODE_EXPIRED', 'code expired');
    if (pending.attempts >= MAX_ATTEMPTS) return answer(res, 401, 'CODE_ATTEMPTS_EXCEEDED', 'too many attempts');
    const right = ctEqual(codeMac(email, String(b.code || '')), pending.mac);
    const user = users.get(String(b.username || '').toLowerCase());
    let passwordOk = false;
    if (right) {
      passwordOk = await argon2.verify(user ? user.hash : dummyHash, String(b.password || ''))
        .catch(() => false);
      passwordOk = passwordOk && !!user && user.email === email;
    }
    if (!right || !passwordOk) {
      pending.attempts += 1;
      return answer(res, 401, right ? 'LOGIN_FAILED' : 'CODE_INVALID', 'sign-in failed');
    }
    // Fixation defence: a new id at sign-in.
    req.session.regenerate((err) => {
      if (err) return answer(res, 503, 'STORE_UNAVAILABLE', 'session store unavailable');
      req.session.user = { username: user.username, email: user.email, createdAt: Date.now() };
      req.session.save((err2) => {
        if (err2) return answer(res, 503, 'STORE_UNAVAILABLE', 'session store unavailable');
        answer(res, 200, 'LOGIN_SUCCESS', 'signed in', { username: user.username, email: user.email, token: null });
      });
    });
  });

  app.get('/api/me', (req, res) => {
    const u = req.session.user;
    if (!u) return answer(res, 401, 'NOT_LOGGED_IN', 'not signed in');
    answer(res, 200, 'OK', 'ok', {
      username: u.username, email: u.email,
      session: { created_at: new Date(u.createdAt).toISOString(), expires_at: req.session.cookie.expires.toISOString() },
    });
  });

  app.use((err, req, res, next) => {
    if (res.headersSent) return next(err);
    answer(res, err.status || 500, err.status === 400 ? 'INVALID_JSON' : 'INTERNAL', String(err.message || err));
  });

  const port = Number(process.env.PORT || 3200);
  const server = app.listen(port, '127.0.0.1', () => console.error(`express-baseline listening on 127.0.0.1:${port}`));
  process.on('SIGTERM', () => {
    server.close(() => { mailer.close(); redis.quit().finally(() => process.exit(0)); });
    setTimeout(() => process.exit(0), 3000).unref();
  });
}

main().catch((err) => { console.error(err); process.exit(1); });
