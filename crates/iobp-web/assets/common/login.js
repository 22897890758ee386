// The login page of both portals: goes on at once when already logged in; afterwards to the
// page it was sent from (`next`, only a page of this portal), or to the password page when
// the password must be changed first.

import { $, replace } from './dom.js';
import { api, go, nextParam } from './api.js';
import { showProblems } from './forms.js';
import { runPage } from './page.js';

runPage(async () => {
  const form = $('#login-form');
  const next = nextParam();
  // Already logged in: go on.
  try {
    const s = await api('GET', '/api/v1/session', undefined, { noRedirect: true });
    if (s.must_change_password) { go('/password?next=' + encodeURIComponent(next)); return; }
    go(next);
    return;
  } catch (_) { /* not logged in: show the form */ }
  if (new URLSearchParams(location.search).has('next') && next !== '/') {
    const box = $('.form-error', form);
    replace(box, 'Please log in to continue.');
    box.className = 'notice info form-error';
    box.hidden = false;
  }
  $('#username').focus();
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const username = $('#username').value.trim();
    const password = $('#password').value;
    const problems = [];
    if (!username) problems.push({ path: 'username', message: 'Enter your user name.' });
    if (!password) problems.push({ path: 'password', message: 'Enter your password.' });
    if (problems.length) { showProblems(form, problems); return; }
    const btn = $('button[type=submit]', form);
    btn.disabled = true;
    try {
      const s = await api('POST', '/api/v1/session', { username, password }, { noRedirect: true });
      if (s.must_change_password) go('/password?next=' + encodeURIComponent(next));
      else go(next);
    } catch (e) {
      btn.disabled = false;
      $('.form-error', form).className = 'notice error form-error';
      showProblems(form, [], e.status === 401 ? 'Wrong user name or password.' : e.message);
      $('#password').select();
    }
  });
});
