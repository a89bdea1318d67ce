// Real-browser test of examples/tickets (SPEC §6): an Express ticket API behind a real nginx that
// protects it with mailcode's /api/auth/check (auth_request), mailcode's own page on the same
// origin, and one route that verifies mailcode's access tokens itself (jose, JWKS).
//
//   cargo build && (cd examples/tickets && npm ci) && cd tests/browser && npm ci && node --test tickets.test.mjs
//
// Like spa.test.mjs it needs no running server: it starts mailcode (MAILCODE_BIN, default
// ../../target/debug/mailcode) with a throwaway data directory, the example app and Debian's
// nginx (apt-get install nginx; examples/tickets/nginx.conf.template rendered with a throwaway
// prefix), each on a free loopback port, and drives Chromium through nginx's origin. Codes come
// from mailcode's development outbox. Every process is stopped at the end, also on failure;
// every wait is bounded. Screenshots: artifacts/tickets-*.png.
//
// What a user would notice, in order: register on mailcode's page; the tickets page shows who is
// signed in (from nginx only: a forged header is replaced, an anonymous request never reaches
// the app); a ticket is created and listed under the user id; a cookie POST from another origin
// is refused (403) before the app; sign out: 401; sign in again: the same user id, the same
// tickets; an access token works on the JWT route (and not for another audience or issuer) and
// PyJWT's stock PyJWKClient verifies it; after `mailcode keys rotate` the app accepts the new key
// at once; `mailcode sessions revoke` ends forward auth at once while the token works until exp.

import { describe, it, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const EXAMPLE = path.join(ROOT, 'examples', 'tickets');
const BIN = process.env.MAILCODE_BIN ? path.resolve(process.env.MAILCODE_BIN) : path.join(ROOT, 'target', 'debug', 'mailcode');
const NGINX = '/usr/sbin/nginx';
// Debian's interpreter, where python3-jwt lives (a python3 earlier in PATH may lack it).
const PYTHON = '/usr/bin/python3';
const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--no-first-run', '--disable-quic', '--disable-sync'];
const ARTIFACTS = path.join(HERE, 'artifacts');
// Short, so that the test can wait for a token to expire; long enough for the steps between
// fetching a token and checking that it still works after the revocation.
const TOKEN_TTL = 10;
const AUDIENCE = 'tickets';

const SUFFIX = crypto.randomBytes(4).toString('hex');
// A username that is not plain ASCII: mailcode percent-encodes it in X-Mailcode-Username.
const USER = { username: `票务_${SUFFIX}`, email: `tickets-${SUFFIX}@example.com` };
const PASSWORD = `Tickets-test-${crypto.randomBytes(6).toString('hex')}`;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let WORK;
const procs = {}; // name -> {proc, log}
const shots = new Map();
const pageErrors = [];
const usedCodes = new Set();
let browser, ctx, page, evilServer;
let ORIGIN, MAILCODE, EVIL;
let USER_ID = null;
let token = null;

// ---------- processes ----------

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const exited = (p) => p.exitCode !== null || p.signalCode !== null;

function start(name, cmd, args, options = {}) {
  const entry = { proc: null, log: '' };
  entry.proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  entry.proc.stdout.on('data', (d) => { entry.log += d; });
  entry.proc.stderr.on('data', (d) => { entry.log += d; });
  entry.proc.on('error', (e) => { entry.log += `spawn failed: ${e.message}\n`; });
  procs[name] = entry;
  return entry;
}

// SIGTERM (nginx's master then stops its workers; a SIGKILL would orphan them), SIGKILL after 5 s.
async function stop(name) {
  const p = procs[name]?.proc;
  if (!p || exited(p)) return;
  const gone = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  const timer = setTimeout(() => { if (!exited(p)) p.kill('SIGKILL'); }, 5_000);
  await gone;
  clearTimeout(timer);
}

// A last resort if the test process ends without after() (an uncaught error): signals only.
process.on('exit', () => {
  for (const { proc } of Object.values(procs)) if (proc && !exited(proc)) proc.kill('SIGTERM');
});

async function waitFor(name, what, check, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (exited(procs[name].proc)) throw new Error(`${name} exited while waiting for ${what}:\n${procs[name].log}`);
    if (await check().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`${name}: no ${what} within ${ms / 1000} s:\n${procs[name].log}`);
}

const answers = async (url) => (await fetch(url, { signal: AbortSignal.timeout(1_000) })).status === 200;

// What reached the app: its stdout has one JSON line per request. A line may arrive here after
// the response it belongs to, so first a marker request goes to the app, and the list is read
// once the marker's line is in: every request before it is then in too (one pipe, in order).
const BARRIER = '/tickets/_barrier-';
async function appSeen() {
  const marker = `${BARRIER}${crypto.randomBytes(4).toString('hex')}`;
  await fetch(`${ORIGIN}${marker}`, { signal: AbortSignal.timeout(5_000) });
  await waitFor('app', `the log line of ${marker}`, async () => procs.app.log.includes(`"path":"${marker}"`), 5_000);
  return procs.app.log.split('\n').filter((l) => l.startsWith('{"seen"')).map((l) => JSON.parse(l))
    .filter((e) => !e.path.startsWith(BARRIER));
}

function logs() {
  return Object.entries(procs).map(([name, { log }]) =>
    `--- ${name} (last 25 lines)\n${log.split('\n').slice(-25).join('\n')}`).join('\n');
}

// Synchronous, bounded: mailcode's CLI and the Python verifier are other processes, so blocking
// this one's event loop for a moment costs nothing.
function run(cmd, args, { input, env, cwd } = {}) {
  const r = spawnSync(cmd, args, { input, env, cwd, encoding: 'utf8', timeout: 20_000 });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  return r;
}

function mailcodeEnv() {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MAILCODE_')));
  env.NO_COLOR = '1';
  return env;
}

// The other origin of the CSRF case: a page that posts a form to the app with the user's cookie.
// Another port of 127.0.0.1 is the same *site*, so the browser does send the SameSite=Lax cookie:
// only the Origin check can stop it.
function startEvilServer(port) {
  const html = `<!doctype html><meta charset="utf-8"><title>other origin</title>
<form id="f" method="POST" action="${ORIGIN}/tickets/api/tickets" enctype="text/plain">
<input name='{"title":"forged from another origin","x":"' value='"}'></form>
<script>document.getElementById('f').submit();</script>`;
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(html);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

// ---------- the page ----------

async function shot(name) {
  const file = `tickets-${name}.png`;
  const png = await page.screenshot({ fullPage: true });
  shots.set(file, png);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  fs.writeFileSync(path.join(ARTIFACTS, file), png);
}

async function code(to) {
  const deadline = Date.now() + 20_000;
  let last = '';
  while (Date.now() < deadline) {
    const res = await fetch(`${MAILCODE}/dev/outbox/latest?to=${encodeURIComponent(to)}`, { signal: AbortSignal.timeout(2_000) });
    last = `${res.status} ${await res.text()}`;
    if (res.status === 200) {
      const c = JSON.parse(last.slice(4)).data?.code;
      if (typeof c === 'string' && /^\d{6}$/.test(c) && !usedCodes.has(c)) {
        usedCodes.add(c);
        return c;
      }
    }
    await sleep(200);
  }
  throw new Error(`no new code for ${to} within 20 s; last answer: ${last}`);
}

// mailcode's built-in page (web/), served by mailcode through nginx: /register or /.
async function signInOnMailcodePage(route) {
  const res = await page.goto(`${ORIGIN}${route}`);
  assert.equal(res.status(), 200, `GET ${route}`);
  await page.waitForSelector('body[data-view="auth"]');
  await page.fill('#email', USER.email);
  const sent = page.waitForResponse((r) => /\/api\/(login|register)\/email-code$/.test(r.url()) && r.request().method() === 'POST');
  await page.click('#get-code');
  assert.equal((await sent).status(), 200);
  await page.fill('#username', USER.username);
  await page.fill('#password', PASSWORD);
  await page.fill('#code', await code(USER.email));
  await page.click('#submit');
  await page.locator('#signed-in').waitFor({ state: 'visible' });
  await page.waitForFunction((u) => document.querySelector('#whoami').textContent.includes(u), USER.username);
}

async function openTickets(view) {
  const res = await page.goto(`${ORIGIN}/tickets/`);
  assert.equal(res.status(), 200, 'GET /tickets/');
  await page.waitForSelector(`body[data-view="${view}"]`);
}

const ticketTitles = () => page.locator('#tickets li.ticket').allInnerTexts();

// Clicks "List with the token" and returns the status the page shows.
async function listWithToken() {
  await page.click('#jwt-list');
  await page.waitForSelector('#jwt-result[data-status]');
  return {
    status: Number(await page.locator('#jwt-result').getAttribute('data-status')),
    code: await page.locator('#jwt-result').getAttribute('data-code'),
    text: await page.locator('#jwt-result').innerText(),
  };
}

async function getToken() {
  const answer = page.waitForResponse((r) => r.url() === `${ORIGIN}/api/token`);
  await page.click('#get-token');
  const res = await answer;
  assert.equal(res.status(), 200, 'POST /api/token');
  const body = await res.json();
  assert.equal(body.data.token_type, 'Bearer');
  assert.equal(body.data.expires_in, TOKEN_TTL);
  await page.waitForSelector('#token-info[data-state="received"]');
  const claims = JSON.parse(Buffer.from(body.data.access_token.split('.')[1], 'base64url').toString());
  return { jwt: body.data.access_token, exp: claims.exp, claims };
}

let broken = null;
function step(name, fn, timeout = 60_000) {
  it(name, { timeout }, async (t) => {
    if (broken) { t.skip(`skipped: "${broken}" failed`); return; }
    try {
      await fn(t);
    } catch (err) {
      broken = name;
      if (page && !page.isClosed()) await shot('failed').catch(() => {});
      // On stderr: the reporter prints an error's stack, made before any message added to it.
      console.error(`--- "${name}" failed; the processes' output:\n${logs()}`);
      throw err;
    }
  });
}

// ---------- the test ----------

function preconditionProblem() {
  if (!fs.existsSync(BIN)) return `${BIN} is missing: run cargo build (or set MAILCODE_BIN to a mailcode binary)`;
  if (!fs.existsSync(CHROMIUM)) return `${CHROMIUM} is missing: apt-get install -y chromium`;
  if (!fs.existsSync(NGINX)) return `${NGINX} is missing: apt-get install -y nginx (or scripts/install-deps)`;
  for (const dep of ['express', 'jose']) {
    if (!fs.existsSync(path.join(EXAMPLE, 'node_modules', dep))) return `examples/tickets needs ${dep}: cd examples/tickets && npm ci`;
  }
  if (spawnSync(PYTHON, ['-c', 'import jwt, cryptography'], { timeout: 10_000 }).status !== 0) {
    return `${PYTHON} cannot import jwt: apt-get install -y python3-jwt (or scripts/install-deps)`;
  }
  return null;
}

const PROBLEM = preconditionProblem();
if (PROBLEM) {
  console.error(`tickets browser test cannot run: ${PROBLEM}`);
  test('preconditions for the tickets browser test', () => assert.fail(PROBLEM));
} else describe('examples/tickets behind nginx auth_request, in Chromium', () => {
  before(async () => {
    for (const f of fs.existsSync(ARTIFACTS) ? fs.readdirSync(ARTIFACTS) : []) {
      if (f.startsWith('tickets-')) fs.rmSync(path.join(ARTIFACTS, f), { force: true });
    }
    WORK = fs.mkdtempSync(path.join(os.tmpdir(), 'mailcode-tickets-test-'));
    const [nginxPort, mailcodePort, appPort, evilPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    ORIGIN = `http://127.0.0.1:${nginxPort}`;
    MAILCODE = `http://127.0.0.1:${mailcodePort}`;
    EVIL = `http://127.0.0.1:${evilPort}`;

    // mailcode: nginx's origin is its public URL (the iss of its tokens), nginx a trusted proxy.
    start('mailcode', BIN, ['--listen', `127.0.0.1:${mailcodePort}`, '--data-dir', path.join(WORK, 'data'),
      '--public-url', ORIGIN, '--trust-proxy', '127.0.0.1/32', '--token-audience', AUDIENCE,
      '--access-token-ttl', String(TOKEN_TTL)], { cwd: WORK, env: mailcodeEnv() });
    start('app', process.execPath, [path.join(EXAMPLE, 'server.mjs'), '--port', String(appPort),
      '--issuer', ORIGIN, '--audience', AUDIENCE], { cwd: EXAMPLE });
    // The template of the README, rendered as envsubst would.
    const prefix = path.join(WORK, 'nginx');
    fs.mkdirSync(prefix);
    const conf = fs.readFileSync(path.join(EXAMPLE, 'nginx.conf.template'), 'utf8')
      .replaceAll('${LISTEN}', `127.0.0.1:${nginxPort}`)
      .replaceAll('${MAILCODE}', `127.0.0.1:${mailcodePort}`)
      .replaceAll('${TICKETS}', `127.0.0.1:${appPort}`);
    fs.writeFileSync(path.join(prefix, 'nginx.conf'), conf);
    await waitFor('mailcode', '/healthz', () => answers(`${MAILCODE}/healthz`));
    await waitFor('app', 'listening line', async () => procs.app.log.includes('"listening"'));
    start('nginx', NGINX, ['-p', prefix, '-c', 'nginx.conf', '-e', 'stderr']);
    await waitFor('nginx', 'mailcode through nginx', () => answers(`${ORIGIN}/healthz`));
    evilServer = await startEvilServer(evilPort);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    ctx = await browser.newContext({ locale: 'en-US', viewport: { width: 900, height: 800 } });
    page = await ctx.newPage();
    page.setDefaultTimeout(15_000);
    page.on('pageerror', (e) => pageErrors.push(`${page.url()}: ${e.message}`));
  }, { timeout: 60_000 });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (evilServer) await new Promise((r) => evilServer.close(r));
    await Promise.all(Object.keys(procs).map(stop));
    // flow.test.mjs empties artifacts/ when it starts; when both run at once, put ours back.
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    for (const [file, png] of shots) fs.writeFileSync(path.join(ARTIFACTS, file), png);
    if (WORK) fs.rmSync(WORK, { recursive: true, force: true });
  }, { timeout: 30_000 });

  step('register on mailcode\'s own page, served through nginx on the app\'s origin', async () => {
    await signInOnMailcodePage('/register');
    const me = await page.evaluate(() => fetch('/api/me').then((r) => r.json()));
    USER_ID = me.data.user_id;
    assert.match(USER_ID, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'a UUIDv7 user id');
    await shot('01-registered');
  });

  step('the tickets page shows who is signed in, as nginx told the app', async () => {
    await openTickets('tickets');
    const who = await page.locator('#whoami').innerText();
    assert.ok(who.includes(USER.username), `the username, percent-decoded: ${who}`);
    assert.ok(who.includes(USER_ID), `the user id: ${who}`);
    assert.deepEqual(await ticketTitles(), [], 'no tickets yet');
    await shot('02-tickets-empty');
  });

  step('a new ticket is listed, kept under the user id', async () => {
    await page.fill('#title', 'Printer on fire');
    await page.click('#create');
    await page.waitForFunction(() => document.querySelectorAll('#tickets li.ticket').length === 1);
    assert.deepEqual(await ticketTitles(), ['Printer on fire']);
    const post = (await appSeen()).filter((s) => s.seen === 'POST');
    assert.deepEqual(post.map((s) => s.user_id), [USER_ID], 'the app saw one POST, with the user id');
    await openTickets('tickets');
    assert.deepEqual(await ticketTitles(), ['Printer on fire'], 'still there after a reload');
    await shot('03-ticket-created');
  });

  step('the app hears the user id from nginx only: a forged one is replaced, anonymous requests never arrive', async () => {
    const forged = '00000000-0000-7000-8000-000000000000';
    const signedIn = await page.evaluate((id) => fetch('/tickets/api/tickets', { headers: { 'X-Mailcode-User-Id': id } })
      .then((r) => r.json()), forged);
    assert.equal(signedIn.data.user.id, USER_ID, 'mailcode\'s id, not the client\'s');

    const before = (await appSeen()).length;
    for (const id of [forged, USER_ID]) {
      const res = await fetch(`${ORIGIN}/tickets/api/tickets`, { headers: { 'X-Mailcode-User-Id': id }, signal: AbortSignal.timeout(5_000) });
      assert.equal(res.status, 401, 'no session: refused by forward auth');
      assert.equal((await res.json()).code, 'NOT_LOGGED_IN');
    }
    assert.equal((await appSeen()).length, before, 'neither anonymous request reached the app');

    // Off the forward-auth location nginx removes the header: the JWT route sees none.
    const res = await fetch(`${ORIGIN}/tickets/jwt/tickets`, { headers: { 'X-Mailcode-User-Id': USER_ID }, signal: AbortSignal.timeout(5_000) });
    assert.equal(res.status, 401);
    assert.equal((await res.json()).code, 'TOKEN_MISSING');
    assert.deepEqual((await appSeen()).slice(before), [{ seen: 'GET', path: '/tickets/jwt/tickets', user_id: null }]);
  });

  step('a cookie POST from another origin is refused (403) before it reaches the app', async () => {
    const before = (await appSeen()).length;
    const answer = page.waitForResponse((r) => r.url() === `${ORIGIN}/tickets/api/tickets` && r.request().method() === 'POST');
    await page.goto(`${EVIL}/`);
    const res = await answer;
    const sent = await res.request().allHeaders();
    assert.ok(/(^|;\s*)mailcode_sid=/.test(sent.cookie || ''), 'the browser did send the session cookie (same site)');
    assert.equal(sent.origin, EVIL);
    assert.equal(res.status(), 403);
    assert.equal((await res.json()).code, 'ORIGIN_REJECTED');
    await shot('04-other-origin-refused');
    assert.equal((await appSeen()).length, before, 'the app saw nothing of it');
    await openTickets('tickets');
    assert.deepEqual(await ticketTitles(), ['Printer on fire'], 'no forged ticket');
  });

  step('sign out on the tickets page: the API answers 401', async () => {
    const before = (await appSeen()).length;
    await page.click('#logout');
    await page.waitForSelector('body[data-view="signed-out"]');
    assert.match(await page.locator('#status').innerText(), /401/);
    assert.ok(await page.locator('#sign-in').isVisible(), 'a link to mailcode\'s sign-in page');
    const status = await page.evaluate(() => fetch('/tickets/api/tickets').then((r) => r.status));
    assert.equal(status, 401);
    assert.equal((await appSeen()).length, before, 'signed out, nothing reaches the app');
    await shot('05-signed-out');
  });

  step('sign in again on mailcode\'s page: the same user id, the same tickets', async () => {
    await signInOnMailcodePage('/');
    await openTickets('tickets');
    assert.ok((await page.locator('#whoami').innerText()).includes(USER_ID));
    assert.deepEqual(await ticketTitles(), ['Printer on fire']);
    await shot('06-signed-in-again');
  });

  step('an access token works on the JWT route; PyJWT\'s stock PyJWKClient verifies it too', async () => {
    token = await getToken();
    assert.equal(token.claims.sub, USER_ID);
    assert.equal(token.claims.iss, ORIGIN);
    assert.equal(token.claims.aud, AUDIENCE);
    const listed = await listWithToken();
    assert.equal(listed.status, 200, listed.text);
    assert.ok(listed.text.includes(`1 ticket(s) for user id ${USER_ID}`), listed.text);
    await shot('07-token-accepted');

    const verify = (aud) => run(PYTHON, [path.join(EXAMPLE, 'verify_token.py'), '--issuer', ORIGIN, '--audience', aud],
      { input: token.jwt });
    const ok = verify(AUDIENCE);
    assert.equal(ok.status, 0, `verify_token.py: ${ok.stderr}`);
    assert.equal(ok.stdout.trim(), USER_ID, 'PyJWT prints the verified sub: the user id');
    const wrong = verify('another-service');
    assert.equal(wrong.status, 1, 'a token for another audience is refused');
    assert.match(wrong.stderr, /InvalidAudienceError/);

    // The app checks iss and aud, not only the signature: the same token, to the same app
    // started for another audience or another issuer (with the same key set), is refused.
    for (const [name, args] of [['app-other-audience', ['--issuer', ORIGIN, '--audience', 'another-service']],
      ['app-other-issuer', ['--issuer', 'https://login.example.com', '--audience', AUDIENCE,
        '--jwks-url', `${ORIGIN}/.well-known/jwks.json`]]]) {
      const port = await freePort();
      start(name, process.execPath, [path.join(EXAMPLE, 'server.mjs'), '--port', String(port), ...args], { cwd: EXAMPLE });
      try {
        await waitFor(name, 'listening line', async () => procs[name].log.includes('"listening"'));
        const res = await fetch(`http://127.0.0.1:${port}/tickets/jwt/tickets`,
          { headers: { Authorization: `Bearer ${token.jwt}` }, signal: AbortSignal.timeout(5_000) });
        const body = await res.json();
        assert.equal(res.status, 401, `${name}: ${JSON.stringify(body)}`);
        assert.equal(body.code, 'TOKEN_INVALID');
        assert.equal(body.data.reason, 'ERR_JWT_CLAIM_VALIDATION_FAILED', name);
      } finally {
        await stop(name);
      }
    }

    // Not a session credential: forward auth refuses it (SPEC §6), so it never reaches the app.
    const before = (await appSeen()).length;
    const res = await fetch(`${ORIGIN}/tickets/api/tickets`, { headers: { Authorization: `Bearer ${token.jwt}` }, signal: AbortSignal.timeout(5_000) });
    assert.equal(res.status, 401);
    assert.equal((await appSeen()).length, before);
  });

  step('after `mailcode keys rotate` the app accepts tokens signed with the new key at once', async () => {
    const kid = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[0], 'base64url').toString()).kid;
    const before = kid(token.jwt);
    const rotated = run(BIN, ['--data-dir', path.join(WORK, 'data'), 'keys', 'rotate'], { cwd: WORK, env: mailcodeEnv() });
    assert.equal(rotated.status, 0, `keys rotate: ${rotated.stdout}${rotated.stderr}`);
    // An instance reads the key generations at most every 10 s (docs/operations.md).
    const deadline = Date.now() + 15_000;
    let fresh;
    do {
      await sleep(500);
      fresh = await page.evaluate(() => fetch('/api/token', { method: 'POST' }).then((r) => r.json()));
      assert.equal(fresh.code, 'OK', JSON.stringify(fresh));
    } while (kid(fresh.data.access_token) === before && Date.now() < deadline);
    assert.notEqual(kid(fresh.data.access_token), before, 'a new kid within 15 s of the rotation');
    // jose fetched the key set for the tokens above and refetches an unknown kid only after a
    // 30 s cooldown: the new key must already be in the set it has (published ahead).
    const res = await fetch(`${ORIGIN}/tickets/jwt/tickets`,
      { headers: { Authorization: `Bearer ${fresh.data.access_token}` }, signal: AbortSignal.timeout(5_000) });
    assert.equal(res.status, 200, JSON.stringify(await res.json()));
  });

  step('`mailcode sessions revoke`: forward auth refuses at once, the token works until its exp, then not', async () => {
    token = await getToken(); // a fresh one, so that the clock below starts now
    const revoked = run(BIN, ['--data-dir', path.join(WORK, 'data'), 'sessions', 'revoke', USER.username],
      { cwd: WORK, env: mailcodeEnv() });
    assert.equal(revoked.status, 0, `sessions revoke: ${revoked.stdout}${revoked.stderr}`);
    assert.match(revoked.stdout, /ended 1 session/);

    // The page stays open (the token lives in its memory); it asks the API again.
    await page.click('#reload');
    await page.waitForSelector('body[data-view="signed-out"]');
    assert.match(await page.locator('#status').innerText(), /401/);
    const still = await listWithToken();
    const now = Date.now() / 1000;
    assert.ok(now < token.exp, `the check came ${(now - token.exp).toFixed(1)} s after exp: raise TOKEN_TTL`);
    assert.equal(still.status, 200, `before exp the token is still accepted: ${still.text}`);
    await shot('08-revoked-token-still-valid');

    await page.click('#get-token');
    await page.waitForSelector('#token-info[data-state="refused"]');
    assert.match(await page.locator('#token-info').innerText(), /401/, 'a revoked session gets no new token');

    // jose refuses once exp is in the past; wait it out (bounded by the token's lifetime).
    const wait = (token.exp + 1) * 1000 - Date.now();
    assert.ok(wait <= (TOKEN_TTL + 1) * 1000, `waiting ${wait} ms`);
    await sleep(Math.max(0, wait));
    const expired = await listWithToken();
    assert.equal(expired.status, 401, expired.text);
    assert.equal(expired.code, 'TOKEN_EXPIRED');
    await shot('09-token-expired');
  });

  step('no script errors on the pages', async () => {
    assert.deepEqual(pageErrors, []);
  });
});
