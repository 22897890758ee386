// The password page of both portals: the first login's forced change, and any user's own
// change. Afterwards back to the page it was sent from (`next`, only a page of this portal).

import { $ } from './dom.js';
import { api, go, nextParam, setCsrf } from './api.js';
import { showProblems } from './forms.js';
import { runPage } from './page.js';

runPage(async () => {
  const form = $('#password-form');
  const next = nextParam();
  let s;
  try {
    s = await api('GET', '/api/v1/session', undefined, { noRedirect: true });
  } catch (e) {
    if (e.status === 401) { go('/login?next=' + encodeURIComponent('/password?next=' + next)); return; }
    showProblems(form, [], e.message);
    return;
  }
  setCsrf(s.csrf_token);
  $('#pw-user').textContent = s.username;
  if (s.must_change_password) {
    $('#pw-lead').textContent = s.username === 'admin'
      ? 'This is the first login with the password ioBufferPro generated at its first start. Choose your own password to continue.'
      : 'An administrator set this password for you. Choose your own password to continue.';
    $('#pw-cancel').hidden = true;
  } else {
    $('#pw-cancel').href = next;
  }
  $('#current').focus();
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const current = $('#current').value;
    const fresh = $('#new').value;
    const again = $('#again').value;
    const problems = [];
    if (!current) problems.push({ path: 'current_password', message: 'Enter your current password.' });
    if (fresh.length < 10) problems.push({ path: 'new_password', message: 'Use at least 10 characters.' });
    else if (fresh.toLowerCase() === s.username.toLowerCase()) problems.push({ path: 'new_password', message: 'The password must differ from the user name.' });
    else if (fresh === current) problems.push({ path: 'new_password', message: 'The new password must differ from the current one.' });
    if (fresh !== again) problems.push({ path: 'again', message: 'The two new passwords differ.' });
    if (problems.length) { showProblems(form, problems); return; }
    const btn = $('button[type=submit]', form);
    btn.disabled = true;
    try {
      await api('POST', '/api/v1/session/password', { current_password: current, new_password: fresh }, { noRedirect: true });
      go(next);
    } catch (e) {
      btn.disabled = false;
      if (e.status === 401) { go('/login?next=' + encodeURIComponent(next)); return; }
      const path = /current password/i.test(e.message) ? 'current_password' : 'new_password';
      showProblems(form, [{ path, message: e.message }]);
    }
  });
});
