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
// Webhooks (SPEC §7): mailcode POSTs its signed events to the app directly (--webhook-url, and a
// second URL to this test, which keeps what it receives); the registration's user.created makes
// the app's profile row, a forged signature gets 401 and makes nothing, a genuine delivery sent
// again makes no second row, and sign-out, revocation and `mailcode user disable` reach the app
// as session.ended and user.disabled.

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
let browser, ctx, page, evilServer, captureServer;
let ORIGIN, MAILCODE, EVIL, APP, DATA, SECRET_FILE, HOOK_URL, CAPTURE_URL;
// What mailcode delivered to this test's own --webhook-url: [{headers, body (Buffer)}].
const captured = [];
let USER_ID = null;
let token = null;
let revokedSession = null;

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

// mailcode's global options, the same for the server and for every CLI command: a CLI command
// that ends sessions writes their events into the outbox itself (docs/operations.md,
// "Webhooks"), so it must know the URLs too; the server's worker then delivers them.
const mailcodeArgs = () => ['--data-dir', DATA, '--webhook-url', HOOK_URL, '--webhook-url', CAPTURE_URL,
  '--webhook-secret-file', SECRET_FILE];

const answers = async (url) => (await fetch(url, { signal: AbortSignal.timeout(1_000) })).status === 200;

// What reached the app: its stdout has one JSON line per request. A line may arrive here after
// the response it belongs to, so first a marker request goes to the app, and the list is read
// once the marker's line is in: every request before it is then in too (one pipe, in order).
const BARRIER = '/tickets/_barrier-';
async function appSeen() {
  const marker = `${BARRIER}${crypto.randomBytes(4).toString('hex')}`;
  await fetch(`${ORIGIN}${marker}`, { signal: AbortSignal.timeout(5_000) });
  await waitFor('app', `the log line of ${marker}`, async () => procs.app.log.includes(`"path":"${marker}"`), 5_000);
  // mailcode's webhooks reach the app directly, at their own pace: they are checked apart.
  return procs.app.log.split('\n').filter((l) => l.startsWith('{"seen"')).map((l) => JSON.parse(l))
    .filter((e) => !e.path.startsWith(BARRIER) && !e.path.startsWith('/hooks/'));
}

// What the app did with each webhook: its stdout has one {"webhook", "id", "user_id",
// "session_id", "result"} line per delivery that reached it.
const appHooks = () => procs.app.log.split('\n').filter((l) => l.startsWith('{"webhook"')).map((l) => JSON.parse(l));

// The deliveries that match, once one has come (bounded). Delivery is at least once (SPEC §7):
// mailcode may send one again, which the app answers `duplicate`; those are left out.
async function waitForHook(what, match, ms = 10_000) {
  const first = (h) => h.result !== 'duplicate' && match(h);
  await waitFor('app', what, async () => appHooks().some(first), ms);
  return appHooks().filter(first);
}

// A POST to the app's webhook route, directly (mailcode's way in, not nginx's).
async function postHook(headers, body) {
  const res = await fetch(`${APP}/hooks/mailcode`, { method: 'POST', headers, body, signal: AbortSignal.timeout(5_000) });
  return { status: res.status, text: await res.text() };
}

async function currentSessionId() {
  const r = await page.evaluate(() => fetch('/api/sessions').then((x) => x.json()));
  const mine = r.data.sessions.filter((s) => s.current);
  assert.equal(mine.length, 1, JSON.stringify(r));
  return mine[0].id;
}

// This test's own webhook receiver: keeps each delivery as it came (the headers that sign it and
// the raw body), answers 204.
function startCaptureServer(port) {
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const headers = {};
      for (const h of ['content-type', 'webhook-id', 'webhook-timestamp', 'webhook-signature']) {
        if (req.headers[h] !== undefined) headers[h] = req.headers[h];
      }
      captured.push({ headers, body: Buffer.concat(chunks) });
      res.writeHead(204).end();
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
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
  for (const dep of ['express', 'jose', 'standardwebhooks']) {
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
    const [nginxPort, mailcodePort, appPort, evilPort, capturePort] = await Promise.all(
      [freePort(), freePort(), freePort(), freePort(), freePort()]);
    ORIGIN = `http://127.0.0.1:${nginxPort}`;
    MAILCODE = `http://127.0.0.1:${mailcodePort}`;
    EVIL = `http://127.0.0.1:${evilPort}`;
    APP = `http://127.0.0.1:${appPort}`;
    DATA = path.join(WORK, 'data');
    // mailcode writes it on its first start; the app, started beside it, reads it once it exists.
    SECRET_FILE = path.join(DATA, 'webhook-secret');
    HOOK_URL = `${APP}/hooks/mailcode`;
    CAPTURE_URL = `http://127.0.0.1:${capturePort}/capture`;
    captureServer = await startCaptureServer(capturePort);

    // mailcode: nginx's origin is its public URL (the iss of its tokens), nginx a trusted proxy.
    start('mailcode', BIN, ['--listen', `127.0.0.1:${mailcodePort}`, ...mailcodeArgs(),
      '--public-url', ORIGIN, '--trust-proxy', '127.0.0.1/32', '--token-audience', AUDIENCE,
      '--access-token-ttl', String(TOKEN_TTL)], { cwd: WORK, env: mailcodeEnv() });
    start('app', process.execPath, [path.join(EXAMPLE, 'server.mjs'), '--port', String(appPort),
      '--issuer', ORIGIN, '--audience', AUDIENCE],
    { cwd: EXAMPLE, env: { ...process.env, MAILCODE_WEBHOOK_SECRET_FILE: SECRET_FILE } });
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
    if (captureServer) {
      captureServer.closeAllConnections();
      await new Promise((r) => captureServer.close(r));
    }
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

  step('the registration\'s user.created webhook makes the app\'s profile row for the user id', async () => {
    // Delivery never delays the request that caused it (SPEC §7): the row comes a moment later.
    const started = Date.now();
    let r;
    do {
      r = await page.evaluate(() => fetch('/tickets/api/profile').then(async (x) => ({ status: x.status, body: await x.json() })));
      if (r.status === 200) break;
      assert.equal(r.status, 404, JSON.stringify(r));
      await sleep(200);
    } while (Date.now() - started < 10_000);
    assert.equal(r.status, 200, `no profile within 10 s of the registration: ${JSON.stringify(r.body)}`);
    const { profile } = r.body.data;
    assert.equal(profile.user_id, USER_ID);
    assert.equal(profile.username, USER.username, 'the username as registered, in JSON (not percent-encoded)');
    assert.ok(Math.abs(Date.parse(profile.created_at) - started) < 60_000, `created_at is the event's time: ${profile.created_at}`);
    // Its log line may reach this process after the answer above: waited for, not just read.
    const created = await waitForHook('the user.created line', (h) => h.webhook === 'user.created', 5_000);
    assert.deepEqual(created.map((h) => [h.user_id, h.result]), [[USER_ID, 'profile_created']], 'one verified user.created');
    assert.match(created[0].id, /^msg_[0-9a-f]{32}$/, 'the webhook-id of the first --webhook-url');
    console.log(`profile row ${Date.now() - started} ms after the registration answered`);
  });

  step('the tickets page shows who is signed in, as nginx told the app', async () => {
    await openTickets('tickets');
    const who = await page.locator('#whoami').innerText();
    assert.ok(who.includes(USER.username), `the username, percent-decoded: ${who}`);
    assert.ok(who.includes(USER_ID), `the user id: ${who}`);
    assert.equal(await page.locator('#profile').getAttribute('data-state'), 'found');
    assert.ok((await page.locator('#profile').innerText()).includes(USER.username), 'the profile is shown');
    assert.deepEqual(await ticketTitles(), [], 'no tickets yet');
    await shot('02-tickets-empty');
  });

  step('the webhook route: a forged signature gets 401 and makes nothing; a genuine delivery sent again makes no second row', async () => {
    // The same event as delivered to this test's URL: the same body, its own webhook-id (…_1).
    await waitFor('app', 'user.created at the test\'s webhook URL', async () => captured.some((c) =>
      JSON.parse(c.body).type === 'user.created'), 10_000);
    const genuine = captured.find((c) => JSON.parse(c.body).type === 'user.created');
    assert.equal(JSON.parse(genuine.body).data.user_id, USER_ID);
    assert.match(genuine.headers['webhook-id'], /^msg_[0-9a-f]{32}_1$/);
    assert.match(genuine.headers['webhook-signature'], /^v1,[A-Za-z0-9+/]+=*$/);
    const profileBefore = await page.evaluate(() => fetch('/tickets/api/profile').then((x) => x.json()));

    // Forged: a user.created for an account that does not exist, signed with another secret; the
    // genuine headers over a changed body; no signature at all.
    const nobody = '00000000-0000-7000-8000-00000000f0f0';
    const forgedBody = Buffer.from(JSON.stringify({ type: 'user.created', timestamp: new Date().toISOString(),
      data: { user_id: nobody, username: 'mallory', email: 'mallory@example.com' } }));
    const forgedId = `msg_${crypto.randomBytes(16).toString('hex')}`;
    const ts = String(Math.floor(Date.now() / 1000));
    const otherKey = crypto.randomBytes(32);
    const otherSig = crypto.createHmac('sha256', otherKey).update(`${forgedId}.${ts}.`).update(forgedBody).digest('base64');
    const forgeries = [
      [{ 'content-type': 'application/json', 'webhook-id': forgedId, 'webhook-timestamp': ts, 'webhook-signature': `v1,${otherSig}` }, forgedBody],
      [genuine.headers, Buffer.from(genuine.body.toString().replace(USER_ID, nobody))],
      [{ 'content-type': 'application/json' }, forgedBody],
    ];
    const refusedBefore = appHooks().filter((h) => h.result === 'refused').length;
    for (const [headers, body] of forgeries) {
      const r = await postHook(headers, body);
      assert.equal(r.status, 401, r.text);
      assert.equal(JSON.parse(r.text).code, 'BAD_SIGNATURE');
    }
    await waitForHook('the refusals logged', () => appHooks().filter((h) => h.result === 'refused').length === refusedBefore + 3, 5_000);
    assert.deepEqual(appHooks().filter((h) => h.user_id === nobody), [], 'nothing handled for the forged account');
    // Asked as nginx would ask for that user (straight to the app, which believes its loopback).
    const none = await fetch(`${APP}/tickets/api/profile`, { headers: { 'X-Mailcode-User-Id': nobody }, signal: AbortSignal.timeout(5_000) });
    assert.equal(none.status, 404, 'no profile row for the forged account');

    // The genuine delivery, byte for byte, twice: the first is a new webhook-id for an account
    // whose row exists, the second a retry of an id already handled. Neither changes the row.
    for (const result of ['exists', 'duplicate']) {
      const r = await postHook(genuine.headers, genuine.body);
      assert.equal(r.status, 204, r.text);
      await waitFor('app', `the replay answered ${result}`, async () => appHooks().some((h) =>
        h.id === genuine.headers['webhook-id'] && h.result === result), 5_000);
    }
    const profileAfter = await page.evaluate(() => fetch('/tickets/api/profile').then((x) => x.json()));
    assert.deepEqual(profileAfter, profileBefore, 'the same profile row, created_at unchanged');
    assert.equal(appHooks().filter((h) => h.result === 'profile_created').length, 1, 'one row made in all');
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

  step('sign out on the tickets page: the API answers 401; the app hears session.ended', async () => {
    const session = await currentSessionId();
    const before = (await appSeen()).length;
    await page.click('#logout');
    await page.waitForSelector('body[data-view="signed-out"]');
    assert.match(await page.locator('#status').innerText(), /401/);
    assert.ok(await page.locator('#sign-in').isVisible(), 'a link to mailcode\'s sign-in page');
    const status = await page.evaluate(() => fetch('/tickets/api/tickets').then((r) => r.status));
    assert.equal(status, 401);
    assert.equal((await appSeen()).length, before, 'signed out, nothing reaches the app');
    await shot('05-signed-out');
    const ended = await waitForHook('session.ended of the sign-out', (h) => h.webhook === 'session.ended' && h.session_id === session);
    assert.deepEqual(ended.map((h) => [h.user_id, h.result]), [[USER_ID, 'recorded']]);
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
    const rotated = run(BIN, [...mailcodeArgs(), 'keys', 'rotate'], { cwd: WORK, env: mailcodeEnv() });
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
    revokedSession = await currentSessionId();
    const revoked = run(BIN, [...mailcodeArgs(), 'sessions', 'revoke', USER.username], { cwd: WORK, env: mailcodeEnv() });
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

  step('the app heard session.ended for the revoked session (written by the CLI, delivered by the server)', async () => {
    const ended = await waitForHook('session.ended of the revocation', (h) => h.webhook === 'session.ended' && h.session_id === revokedSession);
    assert.deepEqual(ended.map((h) => [h.user_id, h.result]), [[USER_ID, 'recorded']]);
    const ids = appHooks().filter((h) => h.result !== 'refused').map((h) => h.id);
    assert.ok(ids.every((id) => /^msg_[0-9a-f]{32}(_1)?$/.test(id)), `webhook-ids: ${ids}`);
  });

  step('`mailcode user disable`: the app hears user.disabled', async () => {
    const disabled = run(BIN, [...mailcodeArgs(), 'user', 'disable', USER.username], { cwd: WORK, env: mailcodeEnv() });
    assert.equal(disabled.status, 0, `user disable: ${disabled.stdout}${disabled.stderr}`);
    const seen = await waitForHook('user.disabled', (h) => h.webhook === 'user.disabled');
    assert.deepEqual(seen.map((h) => [h.user_id, h.result]), [[USER_ID, 'recorded']]);
  });

  step('no script errors on the pages', async () => {
    assert.deepEqual(pageErrors, []);
  });
});
