// The tickets page. It is served by the app on the same origin as mailcode (one nginx), so every
// fetch here is same-origin: the browser sends mailcode's session cookie by itself and no CORS
// setting is involved. The app's API answers in mailcode's envelope: {code, msg, data}.
(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };
  var accessToken = null; // kept in memory only: never in localStorage (any script could read it)

  function call(path, options) {
    return fetch(path, options).then(function (res) {
      return res.text().then(function (text) {
        var env = null;
        try { env = JSON.parse(text); } catch (e) { /* nginx's own 401/403 pages are HTML */ }
        return { status: res.status, code: env && env.code, msg: env && env.msg, data: env && env.data };
      });
    }, function () {
      return { status: 0, code: 'NETWORK', msg: 'The server cannot be reached.', data: null };
    });
  }

  function status(text, isError) {
    $('status').textContent = text;
    $('status').classList.toggle('error', !!isError);
  }

  function show(view) {
    document.body.dataset.view = view;
    $('signed-in').hidden = view !== 'tickets';
    $('signed-out').hidden = view !== 'signed-out';
  }

  function renderList(ul, data) {
    ul.textContent = '';
    data.tickets.forEach(function (t) {
      var li = document.createElement('li');
      li.className = 'ticket';
      li.textContent = t.title;
      li.dataset.id = t.id;
      ul.appendChild(li);
    });
  }

  // The app's own profile row, made by mailcode's user.created webhook (SPEC §7): it may arrive
  // a moment after the registration, so "not yet" is an answer too.
  function renderProfile(r) {
    var p = $('profile');
    if (r.status === 200) {
      p.textContent = 'Profile ' + r.data.profile.username + ', created ' + r.data.profile.created_at
        + ' (from mailcode\'s user.created webhook).';
      p.dataset.state = 'found';
      p.dataset.createdAt = r.data.profile.created_at;
    } else {
      p.textContent = r.status === 404 ? 'No profile yet: the user.created webhook has not arrived.'
        : 'The profile API answered ' + r.status + '.';
      p.dataset.state = r.status === 404 ? 'missing' : 'error';
      delete p.dataset.createdAt;
    }
  }

  function load() {
    document.body.dataset.view = 'loading';
    return call('/tickets/api/tickets').then(function (r) {
      if (r.status !== 200) return r;
      // The view is shown once both answers are in, so that a page shown is a page settled.
      return call('/tickets/api/profile').then(function (p) { renderProfile(p); return r; });
    }).then(function (r) {
      if (r.status === 200) {
        $('whoami').textContent = 'Signed in as ' + r.data.user.username + ' (user id ' + r.data.user.id + ')';
        $('whoami').dataset.userId = r.data.user.id;
        renderList($('tickets'), r.data);
        show('tickets');
        status('');
      } else if (r.status === 401) {
        show('signed-out');
        status('Not signed in (401).', true);
      } else {
        show('signed-out');
        status('The tickets API answered ' + r.status + (r.msg ? ': ' + r.msg : '') + '.', true);
      }
      return r;
    });
  }

  $('new-ticket').addEventListener('submit', function (e) {
    e.preventDefault();
    call('/tickets/api/tickets', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ title: $('title').value }),
    }).then(function (r) {
      if (r.status === 201) {
        $('title').value = '';
        return load();
      }
      if (r.status === 401) { show('signed-out'); }
      status('Not created (' + r.status + (r.msg ? ': ' + r.msg : '') + ').', true);
    });
  });

  // Sign out through mailcode's own API (same origin: the Origin header of this POST is
  // mailcode's origin, so it passes mailcode's Origin check).
  $('logout').addEventListener('click', function () {
    call('/api/logout', { method: 'POST' }).then(function (r) {
      return load().then(function (after) {
        status('Signed out (' + (r.code || r.status) + '); the tickets API now answers ' + after.status + '.', after.status !== 200);
      });
    });
  });

  $('reload').addEventListener('click', function () { load(); });

  $('get-token').addEventListener('click', function () {
    delete $('token-info').dataset.state;
    call('/api/token', { method: 'POST' }).then(function (r) {
      if (r.status === 200 && r.data && r.data.access_token) {
        accessToken = r.data.access_token;
        $('token-info').textContent = 'Access token received, valid for ' + r.data.expires_in + ' s.';
        $('token-info').dataset.state = 'received';
        $('jwt-list').disabled = false;
      } else {
        $('token-info').textContent = 'No token (' + r.status + (r.code ? ' ' + r.code : '') + ').';
        $('token-info').dataset.state = 'refused';
      }
    });
  });

  $('jwt-list').addEventListener('click', function () {
    var out = $('jwt-result');
    delete out.dataset.status;
    call('/tickets/jwt/tickets', { headers: { Authorization: 'Bearer ' + accessToken } }).then(function (r) {
      out.classList.toggle('error', r.status !== 200);
      out.textContent = r.status === 200
        ? r.data.tickets.length + ' ticket(s) for user id ' + r.data.user.id + ' (token accepted).'
        : 'Refused: ' + r.status + ' ' + (r.code || '') + (r.msg ? ': ' + r.msg : '');
      out.dataset.code = r.code || '';
      out.dataset.status = String(r.status);
    });
  });

  load();
})();
