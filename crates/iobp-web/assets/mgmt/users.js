// The Management Dashboard's Users page (`/users`, admins only): create users, change
// roles, reset passwords, relay grants, delete.

import { $, h, replace } from '../common/dom.js';
import { api } from '../common/api.js';
import * as fmt from '../common/format.js';
import { showProblems } from '../common/forms.js';
import { can, needRole, runPage, start } from '../common/page.js';
import { confirm, confirmTyped, dialog, notify } from '../common/ui.js';

const enc = encodeURIComponent;

const ROLES = [
  ['viewer', 'Viewer – read-only dashboards and logs'],
  ['operator', 'Operator – create, edit, start and stop channel pairs'],
  ['admin', 'Admin – everything, including users and settings'],
  ['relay', 'Relay – for another ioBufferPro instance relaying messages'],
];
const USERNAME_RE = /^[A-Za-z0-9._@-]{1,64}$/;

function passwordProblems(username, pw, again, path) {
  const p = [];
  if (pw.length < 10) p.push({ path, message: 'Use at least 10 characters.' });
  else if (pw.toLowerCase() === username.toLowerCase()) p.push({ path, message: 'The password must differ from the user name.' });
  if (pw !== again) p.push({ path: `${path}_again`, message: 'The two passwords differ.' });
  return p;
}

/** Channel ids typed as a comma- or space-separated list. */
const channelList = (text) => text.split(/[\s,]+/).map((c) => c.trim()).filter(Boolean);
const CHANNEL_RE = /^[A-Za-z0-9._-]{1,64}$/;

/** The two grant fields (push into, pull from) of a form, filled from `grants`. */
function grantFields(prefix, grants) {
  const of = (d) => (grants || []).filter((g) => g.direction === d).map((g) => g.channel_id).join(', ');
  const field = (d, label, help) => h('div', { class: 'field' },
    h('label', { for: `${prefix}-${d}`, text: label }),
    h('input', { id: `${prefix}-${d}`, type: 'text', 'data-path': `relay_grants.${d}`, autocomplete: 'off', spellcheck: 'false', value: of(d) }),
    h('div', { class: 'help', text: help }));
  return h('div', { class: 'fields relay-grants' },
    field('push', 'May push into channels', 'channel_ids of this instance’s remote_icombuffer sources (no url), comma-separated. The other instance’s destination sends into them.'),
    field('pull', 'May pull from channels', 'channel_ids of this instance’s remote_icombuffer destinations (no url), comma-separated. The other instance’s source receives from them.'));
}

/** The grants typed into a form's grant fields, or problems. */
function readGrants(form, prefix) {
  const grants = [];
  const problems = [];
  for (const d of ['push', 'pull']) {
    for (const c of channelList($(`#${prefix}-${d}`, form).value)) {
      if (!CHANNEL_RE.test(c)) problems.push({ path: `relay_grants.${d}`, message: `“${c}” is not a channel id (letters, digits, '.', '_', '-').` });
      else grants.push({ channel_id: c, direction: d });
    }
  }
  return { grants, problems };
}

const grantText = (u) => {
  if (!(u.role === 'relay' || u.role === 'admin')) return '';
  if (!u.relay_grants.length) return u.role === 'relay' ? 'none: cannot relay' : '';
  return u.relay_grants.map((g) => `${g.direction} ${g.channel_id}`).join(', ');
};

/** Places a server message (no field paths on the users API) next to the likely field. */
function userErrorPath(e) {
  // The API names the field; a conflict (the name exists, the last admin) has none.
  if (e.problems && e.problems.length && e.problems[0].path) return e.problems[0].path;
  if (e.status === 409 && /exist/i.test(e.message)) return 'username';
  if (/user name/i.test(e.message)) return 'username';
  if (/password/i.test(e.message)) return 'password';
  if (/role|admin/i.test(e.message)) return 'role';
  return '';
}

runPage(async () => {
  const session = await start();
  const root = $('#users-root');
  if (!can('admin')) {
    needRole(root, 'admin', 'Managing users');
    return;
  }
  const createBtn = $('#create-user');
  createBtn.hidden = false;
  const formBox = h('section', { class: 'card', id: 'user-form-card', hidden: true });
  const listBox = h('section', { class: 'card' }, h('p', { class: 'loading', text: 'Loading…' }));
  replace(root, formBox, listBox);

  const input = (id, label, attrs, help) => h('div', { class: 'field' },
    h('label', { for: id, text: label }),
    h('input', { id, ...attrs }),
    help ? h('div', { class: 'help', text: help }) : null);

  function openCreate() {
    const form = h('form', { id: 'user-form', novalidate: true },
      h('div', { class: 'notice error form-error', role: 'alert', hidden: true }),
      h('div', { class: 'fields' },
        input('u-name', 'User name', { type: 'text', 'data-path': 'username', autocomplete: 'off', spellcheck: 'false' }, "Letters, digits, '.', '_', '-', '@'."),
        h('div', { class: 'field' }, h('label', { for: 'u-role', text: 'Role' }),
          h('select', { id: 'u-role', 'data-path': 'role' }, ROLES.map(([v, l]) => h('option', { value: v, text: l }))),
          h('div', { class: 'help', id: 'u-role-help', 'aria-live': 'polite' })),
        input('u-pw', 'Initial password', { type: 'password', 'data-path': 'password', autocomplete: 'new-password' }, 'At least 10 characters.'),
        input('u-pw2', 'Initial password again', { type: 'password', 'data-path': 'password_again', autocomplete: 'new-password' })),
      h('div', { id: 'u-grants', hidden: true }, grantFields('u', [])),
      h('div', { class: 'field check' }, h('input', { type: 'checkbox', id: 'u-must', checked: true }),
        h('label', { for: 'u-must', text: 'Must choose a new password at first login' }),
        h('div', { class: 'help', id: 'u-must-help' })),
      h('div', { class: 'form-actions' },
        h('button', { type: 'submit', class: 'btn primary', id: 'user-submit', text: 'Create user' }),
        h('button', { type: 'button', class: 'btn', id: 'user-cancel', text: 'Cancel' })));
    // A relay user is a machine account: another instance logs in with it through the
    // relay API and never sees the portals' password page, so "must change" is off for it
    // by default (unless the admin chose otherwise).
    const roleSel = $('#u-role', form);
    const must = $('#u-must', form);
    let mustTouched = false;
    must.addEventListener('change', () => { mustTouched = true; });
    const syncRole = () => {
      const relay = roleSel.value === 'relay';
      if (!mustTouched) must.checked = !relay;
      $('#u-grants', form).hidden = !relay;
      $('#u-role-help', form).textContent = relay
        ? 'A machine account for another ioBufferPro instance: it logs in through the relay API only, to push into or pull from the channels granted below, and cannot use the portals. Enter its user name and password in the other instance’s remote_icombuffer side.'
        : 'Admin: everything. Operator: channel pairs. Viewer: read only.';
      $('#u-must-help', form).textContent = relay
        ? 'Off by default for relay users: a machine account never logs into the portals, so it would never choose a new password there. Give the other instance this password; change it here (Reset password) when it must change.'
        : 'The user chooses their own password at the first login.';
    };
    roleSel.addEventListener('change', syncRole);
    syncRole();
    const close = () => { formBox.hidden = true; replace(formBox); createBtn.disabled = false; };
    $('#user-cancel', form).addEventListener('click', close);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const username = $('#u-name').value.trim();
      const role = $('#u-role').value;
      const password = $('#u-pw').value;
      const problems = [];
      if (!USERNAME_RE.test(username)) problems.push({ path: 'username', message: "Use 1-64 letters, digits, '.', '_', '-' or '@'." });
      problems.push(...passwordProblems(username, password, $('#u-pw2').value, 'password'));
      const { grants, problems: grantProblems } = role === 'relay' ? readGrants(form, 'u') : { grants: [], problems: [] };
      problems.push(...grantProblems);
      if (problems.length) { showProblems(form, problems); return; }
      const btn = $('#user-submit');
      btn.disabled = true;
      try {
        await api('POST', '/api/v1/users', { username, password, role, must_change_password: $('#u-must').checked, relay_grants: grants });
        notify(`User ${username} created (${role}).`, 'ok');
        close();
        await load();
      } catch (e) {
        showProblems(form, [{ path: userErrorPath(e), message: e.message }]);
      } finally {
        btn.disabled = false;
      }
    });
    replace(formBox, h('h2', { text: 'Create user' }), form);
    formBox.hidden = false;
    createBtn.disabled = true;
    $('#u-name').focus();
  }
  createBtn.addEventListener('click', openCreate);

  async function changeRole(u, sel) {
    const role = sel.value;
    const ok = await confirm({
      title: `Change the role of ${u.username}?`,
      message: `${u.username} becomes ${role} (was ${u.role}). Their sessions end; they log in again.`,
      confirmLabel: 'Change role',
    });
    if (!ok) { sel.value = u.role; return; }
    sel.disabled = true;
    try {
      await api('PUT', `/api/v1/users/${enc(u.username)}`, { role });
      notify(`${u.username} is now ${role}.`, 'ok');
      await load();
    } catch (e) {
      sel.value = u.role;
      sel.disabled = false;
      notify(e.message, 'error');
    }
  }

  function resetPassword(u) {
    const form = h('form', { novalidate: true, id: 'reset-form' },
      h('div', { class: 'notice error form-error', role: 'alert', hidden: true }),
      input('r-pw', 'New password', { type: 'password', 'data-path': 'password', autocomplete: 'new-password' }, 'At least 10 characters. Their sessions end.'),
      input('r-pw2', 'New password again', { type: 'password', 'data-path': 'password_again', autocomplete: 'new-password' }),
      h('div', { class: 'field check' }, h('input', { type: 'checkbox', id: 'r-must', checked: u.role !== 'relay' }),
        h('label', { for: 'r-must', text: 'Must choose a new password at next login' }),
        u.role === 'relay' ? h('div', { class: 'help', text: 'A relay user never logs into the portals: give the other instance the new password (its remote_icombuffer side’s authentication).' }) : null));
    return dialog({
      title: `Reset the password of ${u.username}`,
      body: form,
      id: 'reset-dialog',
      buttons: [
        { label: 'Cancel', value: false },
        {
          label: 'Reset password',
          class: 'primary',
          value: true,
          action: async (dlg, btn) => {
            const pw = $('#r-pw').value;
            const problems = passwordProblems(u.username, pw, $('#r-pw2').value, 'password');
            if (problems.length) { showProblems(form, problems); return false; }
            btn.disabled = true;
            try {
              await api('PUT', `/api/v1/users/${enc(u.username)}`, { password: pw, must_change_password: $('#r-must').checked });
              notify(`Password of ${u.username} reset.`, 'ok');
              load();
              return true;
            } catch (e) {
              showProblems(form, [{ path: 'password', message: e.message }]);
              btn.disabled = false;
              return false;
            }
          },
        },
      ],
      onOpen: () => $('#r-pw').focus(),
    });
  }

  /** Which channels a relay (or admin) user may push into and pull from. */
  function editGrants(u) {
    const form = h('form', { novalidate: true, id: 'grants-form' },
      h('div', { class: 'notice error form-error', role: 'alert', hidden: true }),
      h('p', { class: 'muted', text: `${u.username} may relay only these channels. Open relay connections of ${u.username} are cut and reconnect under the new grants.` }),
      grantFields('g', u.relay_grants));
    return dialog({
      title: `Relay grants of ${u.username}`,
      body: form,
      id: 'grants-dialog',
      buttons: [
        { label: 'Cancel', value: false },
        {
          label: 'Save grants',
          class: 'primary',
          value: true,
          action: async (dlg, btn) => {
            const { grants, problems } = readGrants(form, 'g');
            if (problems.length) { showProblems(form, problems); return false; }
            btn.disabled = true;
            try {
              await api('PUT', `/api/v1/users/${enc(u.username)}`, { relay_grants: grants });
              notify(`Relay grants of ${u.username} saved.`, 'ok');
              load();
              return true;
            } catch (e) {
              showProblems(form, [{ path: 'relay_grants.push', message: e.message }]);
              btn.disabled = false;
              return false;
            }
          },
        },
      ],
      onOpen: () => $('#g-push').focus(),
    });
  }

  async function removeUser(u) {
    const ok = await confirmTyped({
      title: `Delete user ${u.username}?`,
      message: `${u.username} (${u.role}) can no longer log in; their sessions end now.`,
      expect: u.username,
      confirmLabel: 'Delete user',
    });
    if (!ok) return;
    try {
      await api('DELETE', `/api/v1/users/${enc(u.username)}`);
      notify(`User ${u.username} deleted.`, 'ok');
      await load();
    } catch (e) {
      notify(e.message, 'error');
    }
  }

  async function load() {
    const users = await api('GET', '/api/v1/users');
    const me = session.username;
    const rows = users.map((u) => {
      const sel = h('select', { 'aria-label': `Role of ${u.username}`, dataset: { action: 'role' } },
        ROLES.map(([v]) => h('option', { value: v, text: v })));
      sel.value = u.role;
      sel.addEventListener('change', () => changeRole(u, sel));
      const reset = h('button', { type: 'button', class: 'btn small', dataset: { action: 'reset' }, text: 'Reset password' });
      reset.addEventListener('click', () => resetPassword(u));
      const del = u.username === me ? null : h('button', { type: 'button', class: 'btn small ghost-danger', dataset: { action: 'delete' }, text: 'Delete' });
      if (del) del.addEventListener('click', () => removeUser(u));
      const relays = u.role === 'relay' || u.role === 'admin';
      const grantsBtn = relays ? h('button', { type: 'button', class: 'btn small', dataset: { action: 'grants' }, text: 'Relay grants' }) : null;
      if (grantsBtn) grantsBtn.addEventListener('click', () => editGrants(u));
      return h('tr', { dataset: { user: u.username } },
        h('td', { 'data-label': 'User' }, h('strong', { text: u.username }), u.username === me ? h('span', { class: 'sub', text: ' (you)' }) : null),
        h('td', { 'data-label': 'Role' }, sel),
        h('td', { 'data-label': 'Password' }, u.must_change_password ? h('span', { class: 'tag state-pending', text: 'must change at next login' }) : h('span', { class: 'muted', text: 'set' })),
        h('td', { 'data-label': 'Relays', class: 'grants', text: grantText(u) }),
        h('td', { class: 'nowrap', 'data-label': 'Created', text: fmt.time(u.created_at * 1000) }),
        h('td', { class: 'nowrap', 'data-label': 'Changed', text: fmt.time(u.updated_at * 1000) }),
        h('td', { class: 'actions' }, h('div', { class: 'btn-row' }, reset, grantsBtn, del)));
    });
    replace(listBox,
      h('div', { class: 'card-head' }, h('h2', { text: `${users.length} user${users.length === 1 ? '' : 's'}` }),
        h('span', { class: 'muted small', text: 'Changing a role or password ends that user’s sessions.' })),
      h('div', { class: 'table-wrap' }, h('table', { class: 'stack', id: 'users-table' },
        h('thead', null, h('tr', null, ['User', 'Role', 'Password', 'Relays', 'Created', 'Changed', ''].map((t) => h('th', { text: t })))),
        h('tbody', null, rows))));
  }
  await load();
});
