/* mailcode web page: sign in (/), register (/register), signed-in view.
 * Plain script, no build step, no external resources.
 * The API base is window.MAILCODE_API (for a page on another origin) or '' (same origin).
 * Every text the page shows is in the TEXT dictionary below, in English and Chinese. */
(function () {
  'use strict';

  var TEXT = {
    en: {
      page_title_login: 'Sign in · mailcode',
      page_title_register: 'Create account · mailcode',
      title_login: 'Sign in',
      lead_login: 'We send a one-time code to your email address.',
      title_register: 'Create account',
      lead_register: 'Confirm your email address with a one-time code.',
      label_email: 'Email',
      label_username: 'Username',
      label_password: 'Password',
      label_code: 'Code from the email',
      placeholder_code: '6 digits',
      hint_username: '2–32 letters, digits, _ . -',
      hint_password: 'At least 8 characters.',
      get_code: 'Get code',
      sending: 'Sending…',
      resend_in: 'Resend in {s} s',
      submit_login: 'Sign in',
      submit_register: 'Create account',
      working: 'Please wait…',
      no_account: 'No account yet?',
      link_register: 'Create one',
      have_account: 'Already have an account?',
      link_login: 'Sign in',
      title_signed_in: 'Your account',
      whoami: 'Signed in as {username} ({email})',
      sessions_title: 'Where you are signed in',
      logout_others: 'Sign out elsewhere',
      logout: 'Sign out',
      revoke: 'Revoke',
      current: 'This device',
      created: 'Signed in',
      last_seen: 'Last seen',
      ip: 'IP',
      unknown_device: 'Unknown device',
      unknown: 'unknown',
      no_sessions: 'No sessions.',
      delivery_queued: 'Sending the code to {email}…',
      delivery_slow: 'Still trying to deliver the code to {email}. This takes longer than usual: check the address, or ask for a new code later.',
      delivery_sent: 'Code sent to {email}. It is valid until {time}.',
      delivery_failed: 'We could not deliver the code to {email}. Check the address, or try again in a moment.',
      your_email: 'your address',
      need_email: 'Enter your email address first.',
      missing_field: 'Please enter your {field}.',
      wait: 'Try again in {time}.',
      attempts_left: 'Attempts left: {n}.',
      network_error: 'Cannot reach the server. Check your connection and try again.',
      bad_response: 'Unexpected answer from the server (HTTP {status}).',
      signed_out: 'You are signed out.',
      signed_out_others: 'Signed out of {n} other session(s).',
      no_other_sessions: 'There are no other sessions.',
      session_ended: 'Your session has ended. Please sign in again.',
      lang_toggle: '中文',
      lang_toggle_label: 'Switch to Chinese',
      unit_s: '{n} s',
      unit_min: '{n} min',
      unit_h: '{n} h'
    },
    zh: {
      page_title_login: '登录 · mailcode',
      page_title_register: '注册 · mailcode',
      title_login: '登录',
      lead_login: '我们会向您的邮箱发送一次性验证码。',
      title_register: '注册账号',
      lead_register: '用邮箱验证码确认您的邮箱地址。',
      label_email: '邮箱',
      label_username: '用户名',
      label_password: '密码',
      label_code: '验证码',
      placeholder_code: '6 位数字',
      hint_username: '2–32 个字符：字母、数字、_ . -',
      hint_password: '至少 8 个字符。',
      get_code: '获取验证码',
      sending: '发送中…',
      resend_in: '{s} 秒后可重发',
      submit_login: '登录',
      submit_register: '注册',
      working: '请稍候…',
      no_account: '还没有账号？',
      link_register: '立即注册',
      have_account: '已有账号？',
      link_login: '去登录',
      title_signed_in: '我的账号',
      whoami: '已登录：{username}（{email}）',
      sessions_title: '已登录的设备',
      logout_others: '退出其他设备',
      logout: '退出登录',
      revoke: '下线',
      current: '当前设备',
      created: '登录于',
      last_seen: '最近活动',
      ip: 'IP',
      unknown_device: '未知设备',
      unknown: '未知',
      no_sessions: '没有已登录的设备。',
      delivery_queued: '正在向 {email} 发送验证码…',
      delivery_slow: '仍在尝试向 {email} 发送验证码，比平时慢：请检查邮箱地址，或稍后重新获取。',
      delivery_sent: '验证码已发送至 {email}，{time} 前有效。',
      delivery_failed: '验证码未能送达 {email}。请检查邮箱地址，或稍后重试。',
      your_email: '您的邮箱',
      need_email: '请先填写邮箱地址。',
      missing_field: '请填写{field}。',
      wait: '请在 {time}后重试。',
      attempts_left: '还可尝试 {n} 次。',
      network_error: '无法连接服务器，请检查网络后重试。',
      bad_response: '服务器响应异常（HTTP {status}）。',
      signed_out: '已退出登录。',
      signed_out_others: '已在其他 {n} 台设备上退出登录。',
      no_other_sessions: '没有其他已登录的设备。',
      session_ended: '登录已失效，请重新登录。',
      lang_toggle: 'English',
      lang_toggle_label: '切换到英文',
      unit_s: '{n} 秒',
      unit_min: '{n} 分钟',
      unit_h: '{n} 小时'
    }
  };

  var API = (typeof window.MAILCODE_API === 'string' ? window.MAILCODE_API : '').replace(/\/+$/, '');
  var PAGE = document.body.getAttribute('data-page') === 'register' ? 'register' : 'login';
  var CODE_PATH = PAGE === 'register' ? '/api/register/email-code' : '/api/login/email-code';
  var SUBMIT_PATH = PAGE === 'register' ? '/api/register' : '/api/login/get-token';
  var STATUS_PATH = '/api/login/email-code/status';
  var POLL_MS = 2000;
  var SLOW_MS = 20000; // "queued" for longer than this: say so

  var $ = function (id) { return document.getElementById(id); };
  var el = {
    auth: $('auth'), form: $('auth-form'), email: $('email'), getCode: $('get-code'),
    delivery: $('delivery'), username: $('username'), password: $('password'), code: $('code'),
    submit: $('submit'), message: $('message'), signedIn: $('signed-in'), whoami: $('whoami'),
    sessions: $('sessions'), logout: $('logout'), logoutOthers: $('logout-others'),
    langToggle: $('lang-toggle')
  };

  var state = {
    lang: pickLang(),
    message: null,        // {text} or {key, params}, plus kind
    resendAt: 0,          // ms timestamp when "get code" may be pressed again
    countdownTimer: null,
    sendingCode: false,
    delivery: null,       // {state, email, expiresAt}
    pollTimer: null,
    me: null,             // {username, email}
    sessions: null,       // array from GET /api/sessions
    busy: false
  };

  // ---------- language ----------

  function pickLang() {
    var saved = null;
    try { saved = window.localStorage.getItem('mailcode_lang'); } catch (e) { /* storage off */ }
    if (saved === 'zh' || saved === 'en') return saved;
    var nav = (navigator.language || '').toLowerCase();
    return nav.indexOf('zh') === 0 ? 'zh' : 'en';
  }

  function t(key, params) {
    var s = TEXT[state.lang][key];
    if (s === undefined) s = TEXT.en[key];
    if (s === undefined) s = key;
    return s.replace(/\{(\w+)\}/g, function (m, name) {
      return params && params[name] !== undefined && params[name] !== null ? String(params[name]) : m;
    });
  }

  function locale() { return state.lang === 'zh' ? 'zh-CN' : 'en'; }

  function applyLang() {
    document.documentElement.lang = locale();
    document.title = t(PAGE === 'register' ? 'page_title_register' : 'page_title_login');
    var nodes = document.querySelectorAll('[data-i18n]');
    for (var i = 0; i < nodes.length; i++) {
      nodes[i].textContent = t(nodes[i].getAttribute('data-i18n'));
    }
    var holders = document.querySelectorAll('[data-i18n-placeholder]');
    for (var j = 0; j < holders.length; j++) {
      holders[j].setAttribute('placeholder', t(holders[j].getAttribute('data-i18n-placeholder')));
    }
    el.langToggle.textContent = t('lang_toggle');
    el.langToggle.setAttribute('lang', state.lang === 'zh' ? 'en' : 'zh-CN');
    el.langToggle.setAttribute('aria-label', t('lang_toggle_label'));
    renderGetCode();
    renderBusy();
    renderDelivery();
    renderMessage();
    renderSignedIn();
  }

  // ---------- API ----------

  // Returns {ok, status, code, msg, data, retryAfter}; never throws.
  function api(method, path, body) {
    var opts = {
      method: method,
      credentials: 'include',
      cache: 'no-store',
      headers: { 'Content-Type': 'application/json', 'Accept-Language': state.lang }
    };
    if (body !== undefined) opts.body = JSON.stringify(body);
    return fetch(API + path, opts).then(function (res) {
      return res.text().then(function (text) {
        var env = null;
        try { env = JSON.parse(text); } catch (e) { env = null; }
        var header = res.headers.get('Retry-After');
        if (!env || typeof env !== 'object' || typeof env.code !== 'string') {
          return { ok: false, status: res.status, code: 'BAD_RESPONSE',
                   msg: t('bad_response', { status: res.status }), data: null,
                   retryAfter: header ? parseInt(header, 10) : null };
        }
        var data = env.data && typeof env.data === 'object' ? env.data : {};
        var retry = typeof data.retry_after === 'number' ? data.retry_after
                  : (header && /^\d+$/.test(header) ? parseInt(header, 10) : null);
        return { ok: res.ok, status: res.status, code: env.code,
                 msg: typeof env.msg === 'string' ? env.msg : '', data: data, retryAfter: retry };
      });
    }, function () {
      return { ok: false, status: 0, code: 'NETWORK', msg: t('network_error'), data: null, retryAfter: null };
    });
  }

  // ---------- messages ----------

  function setMessage(text, kind) {
    state.message = text ? { text: text, kind: kind || 'info' } : null;
    renderMessage();
  }

  function setMessageKey(key, params, kind) {
    state.message = { key: key, params: params, kind: kind || 'info' };
    renderMessage();
  }

  function renderMessage() {
    var m = state.message;
    el.message.className = 'message' + (m ? ' ' + m.kind : '');
    el.message.textContent = !m ? '' : (m.key ? t(m.key, m.params) : m.text);
  }

  function formatDuration(seconds) {
    seconds = Math.max(1, Math.ceil(seconds));
    if (seconds < 90) return t('unit_s', { n: seconds });
    if (seconds < 90 * 60) return t('unit_min', { n: Math.ceil(seconds / 60) });
    return t('unit_h', { n: Math.ceil(seconds / 3600) });
  }

  // Shows a server error: its msg, plus what the screen needs (the wait, attempts left).
  function showError(r) {
    var text = r.msg || t('bad_response', { status: r.status });
    // The wait, unless the server's msg already says it.
    if (r.code === 'RATE_LIMITED' && r.retryAfter && text.indexOf(String(r.retryAfter)) === -1) {
      text += ' ' + t('wait', { time: formatDuration(r.retryAfter) });
    }
    if (r.code === 'CODE_INVALID' && r.data && typeof r.data.attempts_left === 'number' &&
        text.indexOf(String(r.data.attempts_left)) === -1) {
      text += ' ' + t('attempts_left', { n: r.data.attempts_left });
    }
    setMessage(text, 'error');
    if (r.code === 'INVALID_INPUT' && r.data && typeof r.data.field === 'string') {
      markInvalid(r.data.field);
    } else if (r.code === 'INVALID_EMAIL') {
      markInvalid('email');
    } else if (r.code === 'USERNAME_TAKEN') {
      markInvalid('username');
    } else if (r.code === 'CODE_INVALID' || r.code === 'CODE_EXPIRED' || r.code === 'CODE_ATTEMPTS_EXCEEDED') {
      markInvalid('code');
    }
  }

  function markInvalid(field) {
    var input = { email: el.email, username: el.username, password: el.password, code: el.code }[field];
    if (!input) return;
    input.setAttribute('aria-invalid', 'true');
    if (!el.auth.hidden) input.focus();
  }

  function clearInvalid() {
    [el.email, el.username, el.password, el.code].forEach(function (i) { i.removeAttribute('aria-invalid'); });
  }

  // ---------- "get code" button and countdown ----------

  function secondsLeft() {
    return Math.max(0, Math.ceil((state.resendAt - Date.now()) / 1000));
  }

  function renderGetCode() {
    var left = secondsLeft();
    if (state.sendingCode) {
      el.getCode.disabled = true;
      el.getCode.textContent = t('sending');
    } else if (left > 0) {
      el.getCode.disabled = true;
      el.getCode.textContent = t('resend_in', { s: left });
    } else {
      el.getCode.disabled = false;
      el.getCode.textContent = t('get_code');
    }
  }

  function startCountdown(untilMs) {
    // Never trust a wildly skewed or absurd value to lock the button for long.
    var max = Date.now() + 2 * 3600 * 1000;
    state.resendAt = Math.min(untilMs, max);
    if (state.countdownTimer) clearInterval(state.countdownTimer);
    state.countdownTimer = setInterval(function () {
      renderGetCode();
      if (secondsLeft() <= 0) { clearInterval(state.countdownTimer); state.countdownTimer = null; }
    }, 250);
    renderGetCode();
  }

  function parseTime(s) {
    var ms = typeof s === 'string' ? Date.parse(s) : NaN;
    return isNaN(ms) ? null : ms;
  }

  function requestCode() {
    clearInvalid();
    var email = el.email.value.trim();
    if (!email) { setMessageKey('need_email', null, 'error'); el.email.focus(); return; }
    if (state.sendingCode || secondsLeft() > 0) return;
    state.sendingCode = true;
    renderGetCode();
    api('POST', CODE_PATH, { email: email }).then(function (r) {
      state.sendingCode = false;
      if (r.ok) {
        var until = parseTime(r.data.resend_available_at);
        startCountdown(until !== null ? until : Date.now() + 60000);
        setMessage(r.msg, 'ok');
        try { window.sessionStorage.setItem('mailcode_email_' + PAGE, email); } catch (e) { /* ignore */ }
        state.delivery = null; // a new code: its own delivery state
        setDelivery(r.data.delivery, email, r.data.expires_at);
        el.code.value = '';
        (el.username.value ? (el.password.value ? el.code : el.password) : el.username).focus();
      } else {
        if (r.code === 'RATE_LIMITED' && r.retryAfter) startCountdown(Date.now() + r.retryAfter * 1000);
        showError(r);
      }
      renderGetCode();
    });
  }

  // ---------- delivery state ----------

  function setDelivery(delivery, email, expiresAt) {
    if (typeof delivery !== 'string') { state.delivery = null; renderDelivery(); return; }
    var prev = state.delivery;
    state.delivery = { state: delivery, email: email || (prev && prev.email) || '',
                       expiresAt: parseTime(expiresAt),
                       queuedSince: prev && prev.state === 'queued' && prev.queuedSince ? prev.queuedSince : Date.now() };
    renderDelivery();
    if (delivery === 'queued') schedulePoll(); else stopPoll();
    if (delivery === 'failed') setMessageKey('delivery_failed', { email: state.delivery.email || t('your_email') }, 'error');
  }

  function renderDelivery() {
    var d = state.delivery;
    if (!d || el.auth.hidden) { el.delivery.hidden = true; el.delivery.textContent = ''; return; }
    var email = d.email || t('your_email');
    var text, slow = d.state === 'queued' && Date.now() - d.queuedSince > SLOW_MS;
    if (d.state === 'queued') {
      text = t(slow ? 'delivery_slow' : 'delivery_queued', { email: email });
    }
    else if (d.state === 'sent') {
      var time = d.expiresAt ? new Intl.DateTimeFormat(locale(), { timeStyle: 'short' }).format(new Date(d.expiresAt)) : '';
      text = t('delivery_sent', { email: email, time: time });
    } else if (d.state === 'failed') text = t('delivery_failed', { email: email });
    else text = d.state;
    el.delivery.textContent = text;
    el.delivery.className = 'delivery ' + d.state + (slow ? ' slow' : '');
    el.delivery.hidden = false;
  }

  function schedulePoll() {
    stopPoll();
    state.pollTimer = setTimeout(pollStatus, POLL_MS);
  }

  function stopPoll() {
    if (state.pollTimer) { clearTimeout(state.pollTimer); state.pollTimer = null; }
  }

  function pollStatus() {
    state.pollTimer = null;
    if (!state.delivery || state.delivery.state !== 'queued' || el.auth.hidden) return;
    if (state.delivery.expiresAt && Date.now() > state.delivery.expiresAt) return;
    api('GET', STATUS_PATH).then(function (r) {
      if (!state.delivery || state.delivery.state !== 'queued') return;
      if (r.ok && typeof r.data.delivery === 'string') {
        setDelivery(r.data.delivery, state.delivery.email, r.data.expires_at || null);
      } else if (r.status === 404 || r.status === 401) {
        state.delivery = null; renderDelivery();
      } else {
        schedulePoll(); // transient trouble: keep asking
      }
    });
  }

  // After a reload: pick up the countdown and delivery state of the code this session already has.
  function restoreCodeState() {
    api('GET', STATUS_PATH).then(function (r) {
      if (!r.ok || !r.data || !el.signedIn.hidden) return;
      if (typeof r.data.purpose === 'string' && r.data.purpose !== PAGE) return; // a code for the other page
      var until = parseTime(r.data.resend_available_at);
      var expires = parseTime(r.data.expires_at);
      if (expires !== null && expires < Date.now()) return;
      var email = '';
      try { email = window.sessionStorage.getItem('mailcode_email_' + PAGE) || ''; } catch (e) { /* ignore */ }
      if (email && !el.email.value) el.email.value = email;
      if (until !== null && until > Date.now()) startCountdown(until);
      if (typeof r.data.delivery === 'string') setDelivery(r.data.delivery, email, r.data.expires_at);
    });
  }

  // ---------- submit (sign in / register) ----------

  function renderBusy() {
    el.submit.disabled = state.busy;
    el.submit.textContent = state.busy ? t('working') : t(PAGE === 'register' ? 'submit_register' : 'submit_login');
  }

  function submit(ev) {
    if (ev) ev.preventDefault();
    if (state.busy) return;
    clearInvalid();
    var body = {
      username: el.username.value.trim(),
      password: el.password.value,
      email: el.email.value.trim(),
      code: el.code.value.replace(/\s+/g, '')
    };
    var order = [['email', el.email, 'label_email'], ['username', el.username, 'label_username'],
                 ['password', el.password, 'label_password'], ['code', el.code, 'label_code']];
    for (var i = 0; i < order.length; i++) {
      if (!body[order[i][0]]) {
        var label = t(order[i][2]);
        setMessageKey('missing_field', { field: state.lang === 'en' ? label.toLowerCase() : label }, 'error');
        markInvalid(order[i][0]);
        return;
      }
    }
    state.busy = true;
    renderBusy();
    api('POST', SUBMIT_PATH, body).then(function (r) {
      state.busy = false;
      renderBusy();
      if (r.ok) {
        el.password.value = '';
        el.code.value = '';
        stopPoll();
        state.delivery = null;
        setMessage(r.msg, 'ok');
        showSignedIn({ username: r.data.username || body.username, email: r.data.email || body.email });
        loadMe();
      } else {
        showError(r);
      }
    });
  }

  // ---------- signed-in view ----------

  function showAuth() {
    state.me = null;
    state.sessions = null;
    el.signedIn.hidden = true;
    el.auth.hidden = false;
    document.body.setAttribute('data-view', 'auth');
    renderDelivery();
    renderGetCode();
  }

  function showSignedIn(me) {
    state.me = me;
    el.auth.hidden = true;
    el.signedIn.hidden = false;
    document.body.setAttribute('data-view', 'signed-in');
    stopPoll();
    renderDelivery();
    renderSignedIn();
  }

  // GET /api/me decides which view to show.
  function loadMe() {
    return api('GET', '/api/me').then(function (r) {
      if (r.ok && r.data && r.data.username) {
        showSignedIn({ username: r.data.username, email: r.data.email });
        return loadSessions();
      }
      if (state.me && r.status === 401) { sessionEnded(r); return null; }
      if (!state.me) showAuth();
      if (r.status !== 401) showError(r);
      return null;
    });
  }

  // The session is gone (signed out elsewhere, expired, or the cookie was not sent).
  function sessionEnded(r) {
    showAuth();
    if (r && r.msg) setMessage(r.msg, 'error'); else setMessageKey('session_ended', null, 'error');
  }

  function loadSessions() {
    return api('GET', '/api/sessions').then(function (r) {
      if (r.ok && r.data && Array.isArray(r.data.sessions)) {
        state.sessions = r.data.sessions;
        renderSignedIn();
        return state.sessions;
      }
      if (r.status === 401) { sessionEnded(r); return null; }
      showError(r);
      return null;
    });
  }

  function describeAgent(ua) {
    if (!ua) return t('unknown_device');
    var browser = null, os = null, m;
    if ((m = /Edg(?:e|A|iOS)?\/(\d+)/.exec(ua))) browser = 'Edge ' + m[1];
    else if ((m = /OPR\/(\d+)/.exec(ua))) browser = 'Opera ' + m[1];
    else if ((m = /(?:Firefox|FxiOS)\/(\d+)/.exec(ua))) browser = 'Firefox ' + m[1];
    else if ((m = /(?:HeadlessChrome|Chrome|Chromium|CriOS)\/(\d+)/.exec(ua))) browser = 'Chrome ' + m[1];
    else if ((m = /Version\/(\d+)[\d.]* (?:Mobile\/\S+ )?Safari\//.exec(ua))) browser = 'Safari ' + m[1];
    else if ((m = /^(curl|Wget|python-requests|okhttp|Go-http-client|node-fetch|undici)\/?([\d.]*)/i.exec(ua))) browser = m[1];
    if (/Windows/.test(ua)) os = 'Windows';
    else if (/Android/.test(ua)) os = 'Android';
    else if (/iPhone|iPad|iPod/.test(ua)) os = 'iOS';
    else if (/Mac OS X|Macintosh/.test(ua)) os = 'macOS';
    else if (/CrOS/.test(ua)) os = 'ChromeOS';
    else if (/Linux/.test(ua)) os = 'Linux';
    if (browser && os) return browser + ' · ' + os;
    if (browser || os) return browser || os;
    return ua.length > 60 ? ua.slice(0, 57) + '…' : ua;
  }

  function formatDate(s) {
    var ms = parseTime(s);
    if (ms === null) return t('unknown');
    return new Intl.DateTimeFormat(locale(), { dateStyle: 'medium', timeStyle: 'short' }).format(new Date(ms));
  }

  function renderSignedIn() {
    if (!state.me) { el.whoami.textContent = ''; el.sessions.textContent = ''; return; }
    el.whoami.textContent = t('whoami', { username: state.me.username, email: state.me.email || '' });
    el.sessions.textContent = '';
    var list = state.sessions || [];
    if (state.sessions && !list.length) {
      var empty = document.createElement('li');
      empty.className = 'empty';
      empty.textContent = t('no_sessions');
      el.sessions.appendChild(empty);
    }
    // The current session first, then the most recently seen.
    list = list.slice().sort(function (a, b) {
      if (!!a.current !== !!b.current) return a.current ? -1 : 1;
      return (parseTime(b.last_seen_at) || 0) - (parseTime(a.last_seen_at) || 0);
    });
    list.forEach(function (s) {
      var li = document.createElement('li');
      li.className = 'session' + (s.current ? ' current' : '');
      li.setAttribute('data-id', String(s.id));

      var head = document.createElement('div');
      head.className = 'session-head';
      var device = document.createElement('span');
      device.className = 'device';
      device.textContent = describeAgent(s.user_agent);
      if (s.user_agent) device.title = s.user_agent;
      head.appendChild(device);
      if (s.current) {
        var badge = document.createElement('span');
        badge.className = 'badge';
        badge.textContent = t('current');
        head.appendChild(badge);
      } else {
        var btn = document.createElement('button');
        btn.type = 'button';
        btn.className = 'revoke small';
        btn.textContent = t('revoke');
        btn.addEventListener('click', function () { revoke(s.id, btn); });
        head.appendChild(btn);
      }
      li.appendChild(head);

      var meta = document.createElement('dl');
      meta.className = 'session-meta';
      [['created', formatDate(s.created_at)], ['last_seen', formatDate(s.last_seen_at)],
       ['ip', s.ip || t('unknown')]].forEach(function (pair) {
        var wrap = document.createElement('div');
        var dt = document.createElement('dt');
        dt.textContent = t(pair[0]);
        var dd = document.createElement('dd');
        dd.textContent = pair[1];
        wrap.appendChild(dt);
        wrap.appendChild(dd);
        meta.appendChild(wrap);
      });
      li.appendChild(meta);
      el.sessions.appendChild(li);
    });
  }

  function deleteSession(id) {
    return api('DELETE', '/api/sessions/' + encodeURIComponent(String(id)));
  }

  function revoke(id, btn) {
    if (btn) btn.disabled = true;
    deleteSession(id).then(function (r) {
      if (r.ok) setMessage(r.msg, 'ok');
      else if (r.status === 401) { sessionEnded(r); return; }
      else showError(r);
      loadSessions();
    });
  }

  function logoutOthers() {
    el.logoutOthers.disabled = true;
    api('GET', '/api/sessions').then(function (r) {
      if (!r.ok || !r.data || !Array.isArray(r.data.sessions)) {
        el.logoutOthers.disabled = false;
        if (r.status === 401) sessionEnded(r); else showError(r);
        return;
      }
      var others = r.data.sessions.filter(function (s) { return !s.current; });
      var done = 0, failure = null;
      // One DELETE each, one after the other.
      var chain = Promise.resolve();
      others.forEach(function (s) {
        chain = chain.then(function () {
          return deleteSession(s.id).then(function (d) {
            if (d.ok) done++; else if (!failure) failure = d;
          });
        });
      });
      chain.then(function () {
        el.logoutOthers.disabled = false;
        if (failure) showError(failure);
        else if (!others.length) setMessageKey('no_other_sessions', null, 'info');
        else setMessageKey('signed_out_others', { n: done }, 'ok');
        return loadSessions();
      });
    });
  }

  function logout() {
    el.logout.disabled = true;
    api('POST', '/api/logout', {}).then(function (r) {
      el.logout.disabled = false;
      if (r.ok || r.status === 401) {
        showAuth();
        if (r.ok && r.msg) setMessage(r.msg, 'ok'); else setMessageKey('signed_out', null, 'ok');
        el.password.value = '';
        el.code.value = '';
      } else {
        showError(r);
      }
    });
  }

  // ---------- wiring ----------

  el.getCode.addEventListener('click', requestCode);
  el.email.addEventListener('keydown', function (e) {
    if (e.key === 'Enter') { e.preventDefault(); requestCode(); }
  });
  el.form.addEventListener('submit', submit);
  el.logout.addEventListener('click', logout);
  el.logoutOthers.addEventListener('click', logoutOthers);
  el.langToggle.addEventListener('click', function () {
    state.lang = state.lang === 'zh' ? 'en' : 'zh';
    try { window.localStorage.setItem('mailcode_lang', state.lang); } catch (e) { /* ignore */ }
    applyLang();
  });
  [el.email, el.username, el.password, el.code].forEach(function (i) {
    i.addEventListener('input', function () { i.removeAttribute('aria-invalid'); });
  });

  applyLang();
  loadMe().then(function () {
    if (!state.me) restoreCodeState();
  });
})();
