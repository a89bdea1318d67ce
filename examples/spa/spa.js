// A minimal single-page app that registers and signs in against mailcode from another origin.
//
// The whole integration is one client setting: every request to mailcode carries
// `credentials: 'include'`, so the browser stores mailcode's session cookie when the code is
// requested and sends it back with the code, with /api/me and with /api/logout.
// (axios: `withCredentials: true`.) mailcode needs one flag: --cors-origin <this page's origin>.
//
// Query parameters:
//   ?api=http://127.0.0.1:3000   mailcode's address (else window.MAILCODE_API from config.js)
//   ?credentials=omit            "mistake mode": leave credentials out, to see what goes wrong
'use strict';

const params = new URLSearchParams(window.location.search);
const API = (params.get('api') || window.MAILCODE_API || 'http://127.0.0.1:3000').replace(/\/+$/, '');
const CREDENTIALS = params.get('credentials') === 'omit' ? 'omit' : 'include';

// ---------- talking to mailcode ----------

// Every answer is {code, msg, data}: branch on `code`, show `msg` to people.
// Returns {ok, status, code, msg, data}; never throws.
async function call(method, path, body) {
  const options = { method, credentials: CREDENTIALS };
  if (body !== undefined) {
    options.headers = { 'Content-Type': 'application/json' };
    options.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(API + path, options);
  } catch (err) {
    // The browser tells a script nothing about why (CORS refused, server down, wrong address);
    // the reason is in the browser's console. Say what usually causes it.
    return {
      ok: false, status: 0, code: 'NETWORK_ERROR', data: null,
      msg: `Could not reach mailcode at ${API} from ${window.location.origin} (${err.message}). ` +
        'Is mailcode running there? If the browser console mentions CORS, start mailcode with ' +
        `--cors-origin ${window.location.origin}`,
    };
  }
  let envelope = null;
  try { envelope = await res.json(); } catch { /* not JSON */ }
  if (!envelope || typeof envelope.code !== 'string') {
    return { ok: false, status: res.status, code: 'BAD_RESPONSE', data: null,
      msg: `Unexpected answer from ${API}${path} (HTTP ${res.status}): is API pointing at mailcode?` };
  }
  return { ok: res.ok, status: res.status, code: envelope.code, msg: envelope.msg || '', data: envelope.data || {} };
}

const requestCode = (mode, email) =>
  call('POST', mode === 'register' ? '/api/register/email-code' : '/api/login/email-code', { email });
const submitCode = (mode, fields) =>
  call('POST', mode === 'register' ? '/api/register' : '/api/login/get-token', fields);
const me = () => call('GET', '/api/me');
const logout = () => call('POST', '/api/logout');

// ---------- the screen ----------

const $ = (id) => document.getElementById(id);
let mode = 'login';
let resendAt = 0;
let countdown = null;

function show(view) {
  document.body.dataset.view = view;
  $('auth').hidden = view !== 'auth';
  $('signed-in').hidden = view !== 'signed-in';
}

function say(r) {
  const m = $('message');
  if (!r) { m.textContent = ''; m.className = ''; delete m.dataset.code; return; }
  m.className = r.ok ? 'ok' : 'error';
  m.dataset.code = r.code;
  m.textContent = r.ok ? r.msg : `${r.code}: ${r.msg}`;
}

function setMode(next) {
  mode = next;
  $('mode-login').setAttribute('aria-selected', String(mode === 'login'));
  $('mode-register').setAttribute('aria-selected', String(mode === 'register'));
  $('submit').textContent = mode === 'register' ? 'Create account' : 'Sign in';
  $('password').autocomplete = mode === 'register' ? 'new-password' : 'current-password';
  say(null);
}

function renderGetCode() {
  const left = Math.ceil((resendAt - Date.now()) / 1000);
  $('get-code').disabled = left > 0;
  $('get-code').textContent = left > 0 ? `Resend in ${left} s` : 'Get code';
  if (left <= 0 && countdown) { clearInterval(countdown); countdown = null; }
}

async function refresh() {
  const r = await me();
  if (r.ok) {
    $('whoami').textContent = `Signed in as ${r.data.username} (${r.data.email})`;
    show('signed-in');
  } else {
    show('auth');
    if (r.code !== 'NOT_LOGGED_IN') say(r); // signed out is normal; anything else is worth showing
  }
}

$('mode-login').addEventListener('click', () => setMode('login'));
$('mode-register').addEventListener('click', () => setMode('register'));

$('get-code').addEventListener('click', async () => {
  const email = $('email').value.trim();
  if (!email) { $('email').focus(); return; }
  $('get-code').disabled = true;
  const r = await requestCode(mode, email);
  say(r);
  const wait = r.ok ? Date.parse(r.data.resend_available_at) - Date.now()
    : r.code === 'RATE_LIMITED' ? (r.data.retry_after || 0) * 1000 : 0;
  resendAt = Date.now() + (Number.isFinite(wait) ? Math.max(0, wait) : 0);
  if (!countdown) countdown = setInterval(renderGetCode, 500);
  renderGetCode();
  if (r.ok) $(($('username').value ? 'code' : 'username')).focus();
});

$('form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('submit').disabled = true;
  const r = await submitCode(mode, {
    email: $('email').value.trim(),
    username: $('username').value.trim(),
    password: $('password').value,
    code: $('code').value.trim(),
  });
  $('submit').disabled = false;
  say(r);
  if (r.ok) {
    $('password').value = '';
    $('code').value = '';
    await refresh(); // GET /api/me with the new session cookie
  }
});

$('logout').addEventListener('click', async () => {
  const r = await logout();
  say(r);
  await refresh();
});

$('page-origin').textContent = window.location.origin;
$('api-base').textContent = API;
$('credentials-mode').textContent = `credentials: '${CREDENTIALS}'`;
setMode('login');
refresh();
