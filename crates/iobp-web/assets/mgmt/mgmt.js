// ioBufferPro Management Dashboard: System Health Overview, settings, users, logs and the
// audit trail. Uses app.js (window.IOBP) and chart.js.
'use strict';

(() => {
  const App = window.IOBP;
  const { h, $, $$, replace } = App;
  const enc = encodeURIComponent;

  function setMeter(el, fraction) {
    const f = Math.max(0, Math.min(1, fraction || 0));
    // Setting a style property from script is allowed by the Content-Security-Policy.
    el.firstElementChild.style.width = `${(f * 100).toFixed(1)}%`;
    el.classList.toggle('warn', f >= 0.8 && f < 1);
    el.classList.toggle('full', f >= 1);
    el.setAttribute('role', 'meter');
    el.setAttribute('aria-valuemin', '0');
    el.setAttribute('aria-valuemax', '100');
    el.setAttribute('aria-valuenow', String(Math.round(f * 100)));
  }

  // ================================================================ health

  App.page('mgmt-health', async () => {
    await App.start();
    const chart = new App.LineChart($('#chart-total'), {
      unit: 'msg/s',
      series: [
        { key: 'received', label: 'Received', color: App.chartColor('--chart-received', '#2563eb') },
        { key: 'sent', label: 'Sent', color: App.chartColor('--chart-sent', '#7c3aed') },
      ],
    });
    let opsBase = null;
    App.otherPortalReady.then((url) => {
      opsBase = url;
      $('#ops-link').href = url;
      $('#ops-link').hidden = false;
      renderPairs(pairs, true);
    });

    function renderHealth(d) {
      const p = d.pairs;
      $('#h-pairs').textContent = App.num(p.total);
      $('#h-pairs-sub').textContent = `${App.num(p.running)} running · ${App.num(p.total - p.running)} stopped`;
      replace($('#h-pairs-colors'),
        [['green', p.green], ['yellow', p.yellow], ['red', p.red], ['white', p.total - p.running]]
          .filter(([, n]) => n > 0)
          .map(([c, n]) => h('span', { class: `badge badge-${c}`, dataset: { color: c }, text: `${n} ${App.label('channel', c)}` })));
      $('#h-rate').textContent = `${App.num1(d.received_per_s)} msg/s`;
      $('#h-rate-sub').textContent = `received · ${App.num1(d.sent_per_s)} msg/s sent`;
      chart.push(Date.now(), { received: d.received_per_s, sent: d.sent_per_s });
      $('#h-cpu').textContent = d.process_cpu_percent === null ? 'n/a' : App.pct(d.process_cpu_percent);
      $('#h-cpu-sub').textContent = `ioBufferPro, of one core · machine ${d.system_cpu_percent === null ? 'n/a' : App.pct(d.system_cpu_percent)} of all cores`;
      $('#h-mem').textContent = App.bytes(d.process_rss_bytes);
      const memTotal = d.system_memory_total_bytes;
      const memAvail = d.system_memory_available_bytes;
      if (memTotal) {
        setMeter($('#h-mem-meter'), (memTotal - memAvail) / memTotal);
        $('#h-mem-sub').textContent = `ioBufferPro resident · machine ${App.bytes(memTotal - memAvail)} of ${App.bytes(memTotal)} in use`;
      } else {
        $('#h-mem-sub').textContent = 'ioBufferPro resident memory';
      }
      if (d.disk_total_bytes) {
        $('#h-disk').textContent = App.bytes(d.disk_free_bytes);
        setMeter($('#h-disk-meter'), (d.disk_total_bytes - d.disk_free_bytes) / d.disk_total_bytes);
        $('#h-disk-sub').textContent = `free of ${App.bytes(d.disk_total_bytes)} on the data directory's file system`;
      } else {
        $('#h-disk').textContent = 'n/a';
      }
      $('#h-uptime').textContent = App.duration(d.uptime_s * 1000);
      $('#h-version').textContent = d.version;
      // The limit in force: max_storage_mb, or the disk's room where that is smaller.
      const limit = d.storage_effective_limit_bytes || d.storage_limit_bytes;
      const frac = limit ? d.storage_used_bytes / limit : 0;
      $('#h-storage').textContent = `${App.bytes(d.storage_used_bytes)} of ${App.bytes(limit)}`;
      setMeter($('#h-storage-meter'), frac);
      $('#h-storage-sub').textContent = d.storage_disk_bound
        ? `${App.num1(frac * 100)} % of the room left on the disk (less than max_storage_mb) used by the buffers`
        : `${App.num1(frac * 100)} % of max_storage_mb used by the buffers`;
      $('#h-datadir').textContent = d.data_dir;
      const warn = $('#storage-warning');
      warn.hidden = !d.storage_warning;
      if (d.storage_warning) {
        const fix = d.storage_disk_bound
          ? 'The disk holding the data directory is the limit: free space on it, or check for destinations that are down.'
          : 'Check for destinations that are down, or raise max_storage_mb in Settings.';
        warn.textContent = frac >= 0.95
          ? `Buffer storage is full (${App.bytes(d.storage_used_bytes)} of ${App.bytes(limit)}${d.storage_disk_bound ? ', bounded by the disk' : ''}): senders are held back and UDP datagrams refused; delivery goes on and frees space. ${fix}`
          : `Buffer storage is above 80 % (${App.num1(frac * 100)} % of ${App.bytes(limit)}${d.storage_disk_bound ? ', bounded by the disk' : ''}). ${fix}`;
      }
      $('#health-sub').textContent = `ioBufferPro ${d.version} · up ${App.duration(d.uptime_s * 1000)} · updated ${App.clock(Date.now()).slice(0, 8)}`;
    }

    let pairs = [];
    function renderPairs(list, force) {
      pairs = list;
      const box = $('#health-pairs');
      if (!list.length) {
        replace(box, h('div', { class: 'empty', text: 'No channel pairs are configured.' }));
        return;
      }
      let tbody = $('tbody', box);
      if (!tbody || force) {
        tbody = h('tbody');
        replace(box, h('div', { class: 'table-wrap' }, h('table', { class: 'stack', id: 'health-pairs-table' },
          h('thead', null, h('tr', null, ['Channel pair', 'Channel', 'Source', 'Buffer', 'Destination', 'Received', 'Sent', 'Undelivered'].map((t) => h('th', { text: t })))),
          tbody)));
      }
      const sorted = [...list].sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
      App.syncList(tbody, sorted, (p) => p.id, (p) => JSON.stringify([p, opsBase]), (p) => {
        const s = p.status;
        const c = s.counts;
        const badge = (kind, color, title, which) => {
          const b = App.badge(kind, color, title);
          b.dataset.indicator = which;
          return b;
        };
        return h('tr', { dataset: { pairId: p.id } },
          h('td', { 'data-label': 'Channel pair' },
            opsBase ? h('a', { href: new URL(`/pairs/${enc(p.id)}`, opsBase).toString(), text: p.name }) : h('span', { text: p.name }),
            h('div', { class: 'sub mono', text: p.id })),
          h('td', { 'data-label': 'Channel' }, badge('channel', s.channel, undefined, 'channel')),
          h('td', { 'data-label': 'Source' }, badge('connection', s.source.status, s.source.detail, 'source')),
          h('td', { 'data-label': 'Buffer' }, badge('buffer', s.buffer, undefined, 'buffer')),
          h('td', { 'data-label': 'Destination' }, badge('connection', s.destination.status, s.destination.detail, 'destination')),
          h('td', { class: 'num', 'data-label': 'Received', text: App.num(c.received) }),
          h('td', { class: 'num', 'data-label': 'Sent', text: App.num(c.sent) }),
          h('td', { class: 'num', 'data-label': 'Undelivered', text: App.num(c.pending + c.in_flight) }));
      });
      const running = list.filter((p) => p.status.channel !== 'white').length;
      $('#h-pairs-note').textContent = `${running} of ${list.length} running`;
    }

    const [health, list] = await Promise.all([App.api('GET', '/api/v1/health'), App.api('GET', '/api/v1/pairs')]);
    renderHealth(health);
    renderPairs(list.map(({ id, name, enabled, status }) => ({ id, name, enabled, status })));
    App.events({ health: 'true' }, { health: renderHealth, pairs: (ps) => renderPairs(ps) });
  });

  // ================================================================ settings

  /** `host:port` or `[v6]:port` with a port of 1-65535. */
  function checkAddress(v) {
    const m = /^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):(\d{1,5})$/.exec(v);
    if (!m) return 'Use an address like 0.0.0.0:8080 or [::]:8080.';
    const port = Number(m[2]);
    if (port < 1 || port > 65535) return 'The port must be between 1 and 65535.';
    if (!/^(\[.*\]|\d{1,3}(\.\d{1,3}){3})$/.test(m[1])) return 'Use an IP address (0.0.0.0 for every interface), not a host name.';
    return null;
  }

  App.page('mgmt-settings', async () => {
    await App.start();
    const admin = App.can('admin');
    const form = $('#settings-form');
    const FIELDS = ['max_storage_mb', 'retention_hours', 'log_level', 'ops_listen', 'mgmt_listen'];
    let current = await App.api('GET', '/api/v1/settings');
    const fill = (dto) => {
      for (const f of FIELDS) {
        const el = $(`#s-${f}`);
        el.value = dto.settings[f] === undefined ? '' : String(dto.settings[f]);
      }
      for (const note of $$('[data-restart]', form)) note.hidden = !dto.restart_fields.includes(note.dataset.restart);
    };
    fill(current);
    if (!admin) {
      const ro = $('#settings-readonly');
      ro.textContent = `Only admins can change settings; you are logged in as ${App.session.username} (${App.session.role}).`;
      ro.hidden = false;
      for (const el of $$('input, select', form)) el.disabled = true;
      $('#settings-save').hidden = true;
      $('#settings-revert').hidden = true;
    }
    App.api('GET', '/api/v1/health').then((d) => {
      $('#settings-status').textContent = `The buffers use ${App.bytes(d.storage_used_bytes)} now (${App.num1(d.storage_limit_bytes ? (100 * d.storage_used_bytes) / d.storage_limit_bytes : 0)} % of the limit).`;
    }).catch(() => {});
    $('#settings-revert').addEventListener('click', () => { App.clearProblems(form); fill(current); });
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (!admin) return;
      App.clearProblems(form);
      const v = {};
      const problems = [];
      for (const f of ['max_storage_mb', 'retention_hours']) {
        const raw = $(`#s-${f}`).value.trim();
        if (!/^\d+$/.test(raw)) { problems.push({ path: f, message: 'Enter a whole number.' }); continue; }
        v[f] = Number(raw);
      }
      if (v.max_storage_mb !== undefined && v.max_storage_mb < 1) problems.push({ path: 'max_storage_mb', message: 'Must be at least 1 MiB.' });
      if (v.retention_hours !== undefined && v.retention_hours > 24 * 366 * 10) problems.push({ path: 'retention_hours', message: 'At most ten years.' });
      v.log_level = $('#s-log_level').value;
      for (const f of ['ops_listen', 'mgmt_listen']) {
        v[f] = $(`#s-${f}`).value.trim();
        const why = checkAddress(v[f]);
        if (why) problems.push({ path: f, message: why });
      }
      if (v.ops_listen && v.ops_listen === v.mgmt_listen) problems.push({ path: 'mgmt_listen', message: 'Must differ from the Operations Portal address.' });
      if (problems.length) { App.showProblems(form, problems); return; }
      const btn = $('#settings-save');
      btn.disabled = true;
      try {
        const res = await App.api('PUT', '/api/v1/settings', v);
        current = { ...res, restart_required: [] };
        fill(res);
        const note = $('#settings-restart');
        if (res.restart_required.length) {
          note.textContent = `Saved. ${res.restart_required.join(' and ')} take${res.restart_required.length === 1 ? 's' : ''} effect when ioBufferPro restarts; everything else applies now.`;
          note.hidden = false;
        } else {
          note.hidden = true;
        }
        App.notify('Settings saved.', 'ok');
        $('#settings-status').textContent = `Saved at ${App.clock(Date.now()).slice(0, 8)}.`;
      } catch (e) {
        App.showError(form, e);
      } finally {
        btn.disabled = false;
      }
    });
  });

  // ================================================================ users

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

  App.page('mgmt-users', async () => {
    await App.start();
    const root = $('#users-root');
    if (!App.can('admin')) {
      App.needRole(root, 'admin', 'Managing users');
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
        if (problems.length) { App.showProblems(form, problems); return; }
        const btn = $('#user-submit');
        btn.disabled = true;
        try {
          await App.api('POST', '/api/v1/users', { username, password, role, must_change_password: $('#u-must').checked, relay_grants: grants });
          App.notify(`User ${username} created (${role}).`, 'ok');
          close();
          await load();
        } catch (e) {
          App.showProblems(form, [{ path: userErrorPath(e), message: e.message }]);
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
      const ok = await App.confirm({
        title: `Change the role of ${u.username}?`,
        message: `${u.username} becomes ${role} (was ${u.role}). Their sessions end; they log in again.`,
        confirmLabel: 'Change role',
      });
      if (!ok) { sel.value = u.role; return; }
      sel.disabled = true;
      try {
        await App.api('PUT', `/api/v1/users/${enc(u.username)}`, { role });
        App.notify(`${u.username} is now ${role}.`, 'ok');
        await load();
      } catch (e) {
        sel.value = u.role;
        sel.disabled = false;
        App.notify(e.message, 'error');
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
      return App.dialog({
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
              if (problems.length) { App.showProblems(form, problems); return false; }
              btn.disabled = true;
              try {
                await App.api('PUT', `/api/v1/users/${enc(u.username)}`, { password: pw, must_change_password: $('#r-must').checked });
                App.notify(`Password of ${u.username} reset.`, 'ok');
                load();
                return true;
              } catch (e) {
                App.showProblems(form, [{ path: 'password', message: e.message }]);
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
      return App.dialog({
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
              if (problems.length) { App.showProblems(form, problems); return false; }
              btn.disabled = true;
              try {
                await App.api('PUT', `/api/v1/users/${enc(u.username)}`, { relay_grants: grants });
                App.notify(`Relay grants of ${u.username} saved.`, 'ok');
                load();
                return true;
              } catch (e) {
                App.showProblems(form, [{ path: 'relay_grants.push', message: e.message }]);
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
      const ok = await App.confirmTyped({
        title: `Delete user ${u.username}?`,
        message: `${u.username} (${u.role}) can no longer log in; their sessions end now.`,
        expect: u.username,
        confirmLabel: 'Delete user',
      });
      if (!ok) return;
      try {
        await App.api('DELETE', `/api/v1/users/${enc(u.username)}`);
        App.notify(`User ${u.username} deleted.`, 'ok');
        await load();
      } catch (e) {
        App.notify(e.message, 'error');
      }
    }

    async function load() {
      const users = await App.api('GET', '/api/v1/users');
      const me = App.session.username;
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
          h('td', { class: 'nowrap', 'data-label': 'Created', text: App.time(u.created_at * 1000) }),
          h('td', { class: 'nowrap', 'data-label': 'Changed', text: App.time(u.updated_at * 1000) }),
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

  // ================================================================ logs

  App.page('mgmt-logs', async () => {
    await App.start();
    const box = $('#log-table');
    let lines = [];
    let timer = null;
    const render = () => {
      const q = $('#log-search').value.trim().toLowerCase();
      const shown = q ? lines.filter((l) => l.message.toLowerCase().includes(q)) : lines;
      if (!shown.length) {
        replace(box, h('div', { class: 'empty', id: 'log-empty', text: lines.length ? 'No line contains that text.' : 'No log lines at this level yet.' }));
        return;
      }
      replace(box, h('table', { class: 'stack', id: 'log-list' },
        h('thead', null, h('tr', null, ['Time', 'Level', 'Message'].map((t) => h('th', { text: t })))),
        h('tbody', null, shown.map((l) => h('tr', null,
          h('td', { class: 'nowrap num', 'data-label': 'Time', text: App.time(l.at_ms) }),
          h('td', { 'data-label': 'Level' }, h('span', { class: `tag level-${l.level}`, text: l.level })),
          h('td', { class: 'message mono', 'data-label': 'Message', text: l.message }))))));
    };
    const load = async () => {
      try {
        lines = await App.api('GET', `/api/v1/logs?level=${$('#log-level').value}&limit=${$('#log-limit').value}`);
        render();
        $('#log-status').textContent = `${App.num(lines.length)} line${lines.length === 1 ? '' : 's'} · updated ${App.clock(Date.now()).slice(0, 8)}`;
      } catch (e) {
        $('#log-status').textContent = `Could not load the log: ${e.message}`;
      }
    };
    $('#log-filter').addEventListener('submit', (ev) => { ev.preventDefault(); load(); });
    $('#log-level').addEventListener('change', load);
    $('#log-limit').addEventListener('change', load);
    $('#log-search').addEventListener('input', render);
    $('#log-auto').addEventListener('change', (ev) => {
      clearInterval(timer);
      if (ev.target.checked) timer = setInterval(load, 5000);
    });
    await load();
  });

  // ================================================================ audit trail

  App.page('mgmt-audit', async () => {
    await App.start();
    const root = $('#audit-root');
    if (!App.can('admin')) {
      App.needRole(root, 'admin', 'The audit trail');
      return;
    }
    const size = h('select', { id: 'audit-size' }, [25, 50, 100, 200].map((n) => h('option', { value: String(n), text: String(n), selected: n === 50 })));
    const newest = h('button', { type: 'button', class: 'btn', id: 'audit-newest', text: 'Newest' });
    const older = h('button', { type: 'button', class: 'btn small', id: 'audit-older', text: 'Older →' });
    const newer = h('button', { type: 'button', class: 'btn small', id: 'audit-newer', text: '← Newer' });
    const pageNo = h('span', { class: 'muted small', id: 'audit-page' });
    const table = h('div', { class: 'table-wrap', id: 'audit-table' });
    replace(root, h('section', { class: 'card' },
      h('div', { class: 'toolbar' },
        h('div', { class: 'field' }, h('label', { for: 'audit-size', text: 'Entries per page' }), size), newest),
      table,
      h('div', { class: 'pager' }, newer, pageNo, older)));
    // Cursors: `before` of each page shown so far (null: the newest).
    let cursors = [null];
    let entries = [];
    const load = async () => {
      const before = cursors[cursors.length - 1];
      const qs = new URLSearchParams({ limit: size.value });
      if (before !== null) qs.set('before', String(before));
      try {
        entries = await App.api('GET', `/api/v1/audit?${qs}`);
      } catch (e) {
        replace(table, h('div', { class: 'notice error', text: e.message }));
        return;
      }
      if (!entries.length) {
        replace(table, h('div', { class: 'empty', text: 'No entries.' }));
      } else {
        replace(table, h('table', { class: 'stack', id: 'audit-list' },
          h('thead', null, h('tr', null, ['When', 'Who', 'From', 'What', 'Target', 'Details'].map((t) => h('th', { text: t })))),
          h('tbody', null, entries.map((e) => h('tr', { dataset: { id: String(e.id), action: e.action } },
            h('td', { class: 'nowrap num', 'data-label': 'When', text: App.time(e.at_ms) }),
            h('td', { 'data-label': 'Who', text: e.username || '—' }),
            h('td', { class: 'mono', 'data-label': 'From', text: e.address || '—' }),
            h('td', { 'data-label': 'What' }, h('span', { class: `tag${/failed/.test(e.action) ? ' level-WARN' : ''}`, text: e.action })),
            h('td', { class: 'mono', 'data-label': 'Target', text: e.target || '—' }),
            h('td', { class: 'message small', 'data-label': 'Details', text: e.detail || '' }))))));
      }
      pageNo.textContent = `Page ${cursors.length}${entries.length ? ` · entries #${entries[entries.length - 1].id}–#${entries[0].id}` : ''}`;
      newer.disabled = cursors.length === 1;
      older.disabled = entries.length < Number(size.value);
    };
    older.addEventListener('click', () => {
      if (!entries.length) return;
      cursors.push(entries[entries.length - 1].id);
      load();
    });
    newer.addEventListener('click', () => {
      if (cursors.length > 1) cursors.pop();
      load();
    });
    newest.addEventListener('click', () => { cursors = [null]; load(); });
    size.addEventListener('change', () => { cursors = [null]; load(); });
    await load();
  });
})();
