// Real-browser test of the mailcode web page (web/), run against a running server.
//
//   cd tests/browser && npm ci && MAILCODE_URL=http://127.0.0.1:38111 node --test
//
// Optional: MAILCODE_CORS_ORIGIN=http://127.0.0.1:38112 (an origin the server was started to allow with
// --cors-origin) makes the test also serve web/ from that origin, with window.MAILCODE_API pointing at
// MAILCODE_URL, and register and sign in from there. Use the same host name in both URLs (same site),
// so the SameSite=Lax cookie is sent. Without it that step is skipped.
//
// The server must run with the development outbox (the default mail transport), because the test
// reads each code from GET /dev/outbox/latest?to=<email>. It uses Debian's Chromium
// (apt-get install -y chromium); playwright-core never downloads a browser here.

import { describe, it, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = path.join(HERE, 'artifacts');
const BASE = (process.env.MAILCODE_URL || '').replace(/\/+$/, '');
const CORS_ORIGIN = (process.env.MAILCODE_CORS_ORIGIN || '').replace(/\/+$/, '');
const WEB = path.resolve(HERE, '..', '..', 'web');
const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--no-first-run', '--disable-quic', '--disable-sync'];

// One fresh account per run.
const SUFFIX = crypto.randomBytes(4).toString('hex');
const EMAIL = `web-${SUFFIX}@example.com`;
const USERNAME = `web_${SUFFIX}`;
const PASSWORD = `Browser-test-${crypto.randomBytes(6).toString('hex')}`;
const USER = { username: USERNAME, email: EMAIL };

const usedCodes = new Set();
const pageErrors = [];
const foreignRequests = [];
let browser;
let ctxA, pageA, ctxB, pageB, pageC;
let corsServer;

// ---------- helpers ----------

// What must hold before a browser is worth starting; returns a message saying how to fix it, or null.
async function preconditionProblem() {
  if (!BASE) {
    return 'MAILCODE_URL is not set. Start mailcode (e.g. `mailcode --listen 127.0.0.1:38111 ' +
      '--data-dir ./data`) and run: MAILCODE_URL=http://127.0.0.1:38111 node --test';
  }
  if (!/^https?:\/\/[^/]+$/.test(BASE)) {
    return `MAILCODE_URL must be an origin like http://127.0.0.1:38111, got ${JSON.stringify(BASE)}`;
  }
  if (CORS_ORIGIN && !/^http:\/\/[^/]+:\d+$/.test(CORS_ORIGIN)) {
    return `MAILCODE_CORS_ORIGIN must look like http://127.0.0.1:38112, got ${JSON.stringify(CORS_ORIGIN)}`;
  }
  if (!fs.existsSync(CHROMIUM)) {
    return `${CHROMIUM} is missing: apt-get install -y chromium`;
  }
  try {
    const res = await fetch(`${BASE}/healthz`, { signal: AbortSignal.timeout(5_000) });
    if (res.status !== 200) return `GET ${BASE}/healthz answered ${res.status}; is mailcode running there?`;
  } catch (err) {
    return `mailcode is not reachable at ${BASE} (${err.cause?.code || err.message}); start it first`;
  }
  return null;
}

async function newContext(options = {}) {
  const ctx = await browser.newContext({ locale: 'en-US', viewport: { width: 1000, height: 900 }, ...options });
  const origins = new Set([new URL(BASE).origin].concat(CORS_ORIGIN ? [new URL(CORS_ORIGIN).origin] : []));
  ctx.on('page', watch);
  function watch(page) {
    page.on('pageerror', (err) => pageErrors.push(`${page.url()}: ${err.message}`));
    page.on('request', (req) => {
      const u = req.url();
      if (!u.startsWith('data:') && !u.startsWith('blob:') && !origins.has(new URL(u).origin)) foreignRequests.push(u);
    });
  }
  return ctx;
}

async function newPage(ctx) {
  const page = await ctx.newPage();
  page.setDefaultTimeout(15_000);
  return page;
}

async function shot(page, name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

async function open(page, route, base = BASE) {
  const res = await page.goto(base + route);
  assert.equal(res.status(), 200, `GET ${route} answered ${res.status()}`);
  // The page decides between the form and the signed-in view after GET /api/me.
  await page.waitForSelector('body[data-view="auth"], body[data-view="signed-in"]');
}

async function expectSignInForm(page) {
  await page.locator('#auth').waitFor({ state: 'visible' });
  await page.locator('#email').waitFor({ state: 'visible' });
  await page.locator('#signed-in').waitFor({ state: 'hidden' });
}

async function expectSignedIn(page, user = USER) {
  await page.locator('#signed-in').waitFor({ state: 'visible' });
  await page.locator('#auth').waitFor({ state: 'hidden' });
  await page.waitForFunction((u) => document.querySelector('#whoami').textContent.includes(u), user.username);
  const who = await page.locator('#whoami').textContent();
  assert.ok(who.includes(user.username), `#whoami should name ${user.username}: ${who}`);
  assert.ok(who.includes(user.email), `#whoami should show ${user.email}: ${who}`);
  await page.locator('#sessions .session.current').first().waitFor({ state: 'visible' });
  assert.ok(await page.locator('#sessions .session.current').count() >= 1, 'a current session is listed');
}

// Clicks "get code" and returns {status, body} of the POST .../email-code it sent.
async function clickGetCode(page) {
  const answer = page.waitForResponse((r) => /\/api\/(login|register)\/email-code$/.test(new URL(r.url()).pathname)
    && r.request().method() === 'POST');
  await page.locator('#get-code').click();
  const res = await answer;
  return { status: res.status(), body: await res.json(), request: res.request() };
}

async function getCodeButton(page) {
  return page.locator('#get-code').evaluate((b) => ({ disabled: b.disabled, text: b.textContent }));
}

// The "get code" button must be disabled and show a number of seconds that goes down.
async function expectCountdown(page) {
  await page.waitForFunction(() => {
    const b = document.querySelector('#get-code');
    return b.disabled && /\d/.test(b.textContent);
  });
  const first = await getCodeButton(page);
  const n1 = Number(first.text.match(/\d+/)[0]);
  assert.ok(n1 > 0, `countdown starts above zero: ${first.text}`);
  await page.waitForFunction((n) => {
    const b = document.querySelector('#get-code');
    const m = b.textContent.match(/\d+/);
    return !m || Number(m[0]) < n;
  }, n1, { timeout: 5_000 });
  const second = await getCodeButton(page);
  assert.ok(second.disabled || n1 <= 2, `button still disabled while counting: ${second.text}`);
  return n1;
}

// Reads the newest code mailed to `to` from the development outbox (polls: delivery is queued).
async function codeFromOutbox(to) {
  const deadline = Date.now() + 20_000;
  let last = '';
  while (Date.now() < deadline) {
    const res = await fetch(`${BASE}/dev/outbox/latest?to=${encodeURIComponent(to)}`);
    last = `${res.status} ${await res.text()}`;
    if (res.status === 200) {
      const body = JSON.parse(last.slice(4));
      const code = body.data && body.data.code;
      if (typeof code === 'string' && /^\d{6}$/.test(code) && !usedCodes.has(code)) {
        usedCodes.add(code);
        return code;
      }
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`no new code for ${to} in the dev outbox within 20 s; last answer: ${last}`);
}

async function fillCredentials(page, code, user = USER) {
  await page.locator('#username').fill(user.username);
  await page.locator('#password').fill(PASSWORD);
  await page.locator('#code').fill(code);
}

// Serves web/ the way a site on another origin would: same files, window.MAILCODE_API = MAILCODE_URL.
function startCorsPageServer() {
  const { hostname, port } = new URL(CORS_ORIGIN);
  const pages = { '/': 'index.html', '/register': 'register.html' };
  const assets = { '/assets/app.js': ['app.js', 'text/javascript'], '/assets/style.css': ['style.css', 'text/css'] };
  const server = http.createServer((req, res) => {
    const route = new URL(req.url, CORS_ORIGIN).pathname;
    if (pages[route]) {
      const html = fs.readFileSync(path.join(WEB, pages[route]), 'utf8').replace('<script src="/assets/app.js">',
        `<script>window.MAILCODE_API = ${JSON.stringify(BASE)};</script>\n  <script src="/assets/app.js">`);
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(html);
    } else if (assets[route]) {
      res.writeHead(200, { 'Content-Type': `${assets[route][1]}; charset=utf-8` });
      res.end(fs.readFileSync(path.join(WEB, assets[route][0])));
    } else {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found');
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(port), hostname, () => resolve(server));
  });
}

// Runs the steps in order; once one fails the rest are skipped (they depend on it).
let broken = null;
function step(name, fn, timeout = 60_000) {
  it(name, { timeout }, async (t) => {
    if (broken) { t.skip(`skipped: "${broken}" failed`); return; }
    try {
      await fn(t);
    } catch (err) {
      broken = name;
      for (const [label, page] of [['A', pageA], ['B', pageB], ['C', pageC]]) {
        if (page && !page.isClosed()) {
          await shot(page, `failed-${label}`).catch(() => {});
        }
      }
      throw err;
    }
  });
}

// ---------- the test ----------

const PROBLEM = await preconditionProblem();
if (PROBLEM) {
  console.error(`browser test cannot run: ${PROBLEM}`);
  test('preconditions for the browser test', () => assert.fail(PROBLEM));
} else describe('mailcode web page in Chromium', () => {
  before(async () => {
    fs.rmSync(ARTIFACTS, { recursive: true, force: true });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });

  after(async () => {
    if (browser) await browser.close();
    if (corsServer) await new Promise((r) => corsServer.close(r));
  });

  step('register page loads from the server itself with every element the page needs', async () => {
    ctxA = await newContext();
    pageA = await newPage(ctxA);
    await open(pageA, '/register');
    await expectSignInForm(pageA);
    for (const id of ['email', 'get-code', 'username', 'password', 'code', 'submit', 'message', 'signed-in',
      'whoami', 'sessions', 'logout', 'logout-others', 'lang-toggle']) {
      assert.equal(await pageA.locator(`#${id}`).count(), 1, `#${id} exists once`);
    }
    assert.equal(await pageA.evaluate(() => document.documentElement.lang), 'en');
    assert.match(await pageA.locator('#submit').textContent(), /register|create/i);
    assert.ok(await pageA.locator('a[href="/"]').count() >= 1, 'register page links to the sign-in page');
    await shot(pageA, '01-register');
  });

  step('register: "get code" sends a code and counts down until a resend is allowed', async () => {
    await pageA.locator('#email').fill(EMAIL);
    const { status, body, request } = await clickGetCode(pageA);
    assert.equal(status, 200, JSON.stringify(body));
    assert.equal(body.code, 'CODE_SENT');
    assert.equal(request.headers()['accept-language'], 'en');
    assert.match(request.headers()['content-type'] || '', /application\/json/);
    await expectCountdown(pageA);
    await pageA.locator('#delivery').waitFor({ state: 'visible' });
    await shot(pageA, '02-register-code-sent');
  });

  step('register: username, password and the mailed code sign the new account in', async () => {
    const code = await codeFromOutbox(EMAIL);
    // The page polls GET /api/login/email-code/status while the mail is queued; it is in the outbox now.
    await pageA.waitForSelector('#delivery.sent', { timeout: 15_000 });
    assert.ok((await pageA.locator('#delivery').textContent()).includes(EMAIL), '#delivery names the address');
    await fillCredentials(pageA, code);
    await pageA.locator('#submit').click();
    await expectSignedIn(pageA);
    await shot(pageA, '03-registered-signed-in');
  });

  step('sign out shows the sign-in form again', async () => {
    await pageA.locator('#logout').click();
    await expectSignInForm(pageA);
    const me = await pageA.evaluate(() => fetch('/api/me', { credentials: 'include' }).then((r) => r.status));
    assert.equal(me, 401, 'GET /api/me after sign out');
    await shot(pageA, '04-signed-out');
  });

  step('sign in on /: a wrong code shows a message, the right code signs in', async () => {
    await open(pageA, '/');
    await expectSignInForm(pageA);
    assert.match(await pageA.locator('#submit').textContent(), /sign in/i);
    assert.ok(await pageA.locator('a[href="/register"]').count() >= 1, 'sign-in page links to /register');
    await pageA.locator('#email').fill(EMAIL);
    const { status, body } = await clickGetCode(pageA);
    assert.equal(status, 200, JSON.stringify(body));
    await expectCountdown(pageA);
    const code = await codeFromOutbox(EMAIL);
    const wrong = String((Number(code) + 1) % 1_000_000).padStart(6, '0');

    await fillCredentials(pageA, wrong);
    const answer = pageA.waitForResponse((r) => r.url().endsWith('/api/login/get-token'));
    await pageA.locator('#submit').click();
    const res = await answer;
    assert.equal(res.status(), 401);
    assert.equal((await res.json()).code, 'CODE_INVALID');
    await pageA.waitForFunction(() => {
      const m = document.querySelector('#message');
      return m.classList.contains('error') && m.textContent.trim().length > 0;
    });
    assert.ok(await pageA.locator('#message').isVisible(), '#message is visible');
    assert.ok(await pageA.locator('#signed-in').isHidden(), 'still signed out after a wrong code');
    await shot(pageA, '05-wrong-code');

    await pageA.locator('#code').fill(code);
    await pageA.locator('#submit').click();
    await expectSignedIn(pageA);
    await shot(pageA, '06-signed-in');
  });

  step('a second browser signs in too (waiting out the resend limit if the server asks)', async () => {
    ctxB = await newContext();
    pageB = await newPage(ctxB);
    await open(pageB, '/');
    await expectSignInForm(pageB);
    await pageB.locator('#email').fill(EMAIL);
    let answer = await clickGetCode(pageB);
    let limited = 0;
    while (answer.status === 429) {
      assert.equal(answer.body.code, 'RATE_LIMITED');
      // The page shows the server's message with the wait and counts the button down.
      await pageB.waitForFunction(() => {
        const m = document.querySelector('#message');
        return m.classList.contains('error') && /\d/.test(m.textContent);
      });
      if (limited === 0) {
        await expectCountdown(pageB);
        await shot(pageB, '07-rate-limited');
      }
      assert.ok(++limited <= 5, 'still rate limited after 5 waits');
      await pageB.waitForFunction(() => !document.querySelector('#get-code').disabled, null, { timeout: 90_000 });
      answer = await clickGetCode(pageB);
    }
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    await expectCountdown(pageB);
    const code = await codeFromOutbox(EMAIL);
    await fillCredentials(pageB, code);
    await pageB.locator('#submit').click();
    await expectSignedIn(pageB);
    await shot(pageB, '08-second-browser-signed-in');
  }, 150_000);

  step('"sign out elsewhere" in the first browser ends the second browser\'s session', async () => {
    await pageA.reload();
    await expectSignedIn(pageA);
    await pageA.waitForFunction(() => document.querySelectorAll('#sessions .session').length >= 2);
    assert.equal(await pageA.locator('#sessions .session.current').count(), 1, 'exactly one current session');
    assert.ok(await pageA.locator('#sessions .session:not(.current) button').count() >= 1,
      'other sessions have a revoke button');
    await shot(pageA, '09-two-sessions');

    await pageA.locator('#logout-others').click();
    await pageA.waitForFunction(() => document.querySelectorAll('#sessions .session').length === 1);
    assert.equal(await pageA.locator('#sessions .session.current').count(), 1, 'the current session stays');
    await expectSignedIn(pageA);
    await shot(pageA, '10-signed-out-elsewhere');

    await pageB.reload();
    await pageB.waitForSelector('body[data-view="auth"], body[data-view="signed-in"]');
    await expectSignInForm(pageB);
    await shot(pageB, '11-second-browser-signed-out');

    await pageA.locator('#logout').click();
    await expectSignInForm(pageA);
  });

  step('Chinese: picked from navigator.language, server messages in Chinese, toggle back to English', async () => {
    const ctx = await newContext({ locale: 'zh-CN' });
    const page = await newPage(ctx);
    await open(page, '/');
    await expectSignInForm(page);
    assert.match(await page.evaluate(() => document.documentElement.lang), /^zh/);
    assert.match(await page.locator('#submit').textContent(), /[\u4e00-\u9fff]/, 'Chinese button text');

    await page.locator('#email').fill('not-an-email');
    let answer = await clickGetCode(page);
    assert.equal(answer.status, 400, JSON.stringify(answer.body));
    assert.equal(answer.body.code, 'INVALID_EMAIL');
    assert.match(answer.request.headers()['accept-language'], /^zh/);
    await page.waitForFunction(() => document.querySelector('#message').textContent.trim().length > 0);
    assert.equal((await page.locator('#message').textContent()).trim(), answer.body.msg.trim(),
      '#message shows the server msg');
    assert.match(answer.body.msg, /[\u4e00-\u9fff]/, `server msg should be Chinese: ${answer.body.msg}`);
    await shot(page, '12-chinese');

    await page.locator('#lang-toggle').click();
    assert.equal(await page.evaluate(() => document.documentElement.lang), 'en');
    assert.match(await page.locator('#submit').textContent(), /sign in/i);
    answer = await clickGetCode(page);
    assert.equal(answer.request.headers()['accept-language'], 'en');
    assert.doesNotMatch(answer.body.msg, /[\u4e00-\u9fff]/, `server msg should be English: ${answer.body.msg}`);
    await ctx.close();
  });

  step('phone-sized screen: no sideways scrolling', async () => {
    const ctx = await newContext({ viewport: { width: 375, height: 740 }, isMobile: true, hasTouch: true,
      deviceScaleFactor: 2 });
    const page = await newPage(ctx);
    for (const [route, name] of [['/register', '13-phone-register'], ['/', '14-phone-sign-in']]) {
      await open(page, route);
      await expectSignInForm(page);
      const { scroll, inner } = await page.evaluate(() => ({
        scroll: document.documentElement.scrollWidth, inner: window.innerWidth }));
      assert.ok(scroll <= inner, `${route}: page is ${scroll}px wide in a ${inner}px window`);
      await shot(page, name);
    }
    await ctx.close();
  });

  step('a page on another origin registers and signs in through the API (MAILCODE_CORS_ORIGIN)', async (t) => {
    if (!CORS_ORIGIN) {
      t.skip('MAILCODE_CORS_ORIGIN not set: start mailcode with --cors-origin <origin> and set it to test this');
      return;
    }
    corsServer = await startCorsPageServer();
    const suffix = crypto.randomBytes(4).toString('hex');
    const user = { username: `cors_${suffix}`, email: `cors-${suffix}@example.com` };
    const ctx = await newContext();
    const page = pageC = await newPage(ctx);
    await open(page, '/register', CORS_ORIGIN);
    await expectSignInForm(page);
    await page.locator('#email').fill(user.email);
    const answer = await clickGetCode(page);
    assert.equal(new URL(answer.request.url()).origin, new URL(BASE).origin, 'the page calls MAILCODE_URL');
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    await expectCountdown(page);
    await fillCredentials(page, await codeFromOutbox(user.email), user);
    await page.locator('#submit').click();
    await expectSignedIn(page, user);
    await page.reload();
    await expectSignedIn(page, user);
    await shot(page, '15-other-origin-signed-in');
    await page.locator('#logout').click();
    await expectSignInForm(page);
    await page.reload();
    await page.waitForSelector('body[data-view="auth"], body[data-view="signed-in"]');
    await expectSignInForm(page);
    await ctx.close();
  });

  step('no script errors and no request left the server\'s origin', async () => {
    assert.deepEqual(pageErrors, [], 'uncaught errors in the page');
    assert.deepEqual(foreignRequests, [], 'requests to other origins');
  });
});
