// The Management Dashboard's Settings page (`/settings`): buffer capacity, logging and the
// portals' addresses, with what needs a restart; read-only for non-admins.

import { $, $$ } from '../common/dom.js';
import { api } from '../common/api.js';
import * as fmt from '../common/format.js';
import { clearProblems, showError, showProblems } from '../common/forms.js';
import { can, runPage, start } from '../common/page.js';
import { notify } from '../common/ui.js';

/** `host:port` or `[v6]:port` with a port of 1-65535. */
function checkAddress(v) {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):(\d{1,5})$/.exec(v);
  if (!m) return 'Use an address like 0.0.0.0:8080 or [::]:8080.';
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return 'The port must be between 1 and 65535.';
  if (!/^(\[.*\]|\d{1,3}(\.\d{1,3}){3})$/.test(m[1])) return 'Use an IP address (0.0.0.0 for every interface), not a host name.';
  return null;
}

runPage(async () => {
  const session = await start();
  const admin = can('admin');
  const form = $('#settings-form');
  const FIELDS = ['max_storage_mb', 'retention_hours', 'log_level', 'ops_listen', 'mgmt_listen'];
  let current = await api('GET', '/api/v1/settings');
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
    ro.textContent = `Only admins can change settings; you are logged in as ${session.username} (${session.role}).`;
    ro.hidden = false;
    for (const el of $$('input, select', form)) el.disabled = true;
    $('#settings-save').hidden = true;
    $('#settings-revert').hidden = true;
  }
  api('GET', '/api/v1/health').then((d) => {
    $('#settings-status').textContent = `The buffers use ${fmt.bytes(d.storage_used_bytes)} now (${fmt.num1(d.storage_limit_bytes ? (100 * d.storage_used_bytes) / d.storage_limit_bytes : 0)} % of the limit).`;
  }).catch(() => {});
  $('#settings-revert').addEventListener('click', () => { clearProblems(form); fill(current); });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!admin) return;
    clearProblems(form);
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
    if (problems.length) { showProblems(form, problems); return; }
    const btn = $('#settings-save');
    btn.disabled = true;
    try {
      const res = await api('PUT', '/api/v1/settings', v);
      current = { ...res, restart_required: [] };
      fill(res);
      const note = $('#settings-restart');
      if (res.restart_required.length) {
        note.textContent = `Saved. ${res.restart_required.join(' and ')} take${res.restart_required.length === 1 ? 's' : ''} effect when ioBufferPro restarts; everything else applies now.`;
        note.hidden = false;
      } else {
        note.hidden = true;
      }
      notify('Settings saved.', 'ok');
      $('#settings-status').textContent = `Saved at ${fmt.clock(Date.now()).slice(0, 8)}.`;
    } catch (e) {
      showError(form, e);
    } finally {
      btn.disabled = false;
    }
  });
});
