// The backup destinations of the channel-pair form (failover), their order, failback and
// the failover policy.

import { $, $$, h } from '../common/dom.js';
import { field } from './form-fields.js';
import { sideBlock } from './form-sides.js';

/**
 * The ordered backup destinations (failover) and failback. Each backup is a destination
 * sub-form under its own prefix (`failover.b1`, …) that stays with it when the backups are
 * reordered; the form sends them as the `failover` list in the order shown, and maps the
 * server's `failover[i]` paths back to the i-th block.
 */
export function backupsBlock(spec, ctx) {
  const list = h('div', { class: 'backup-list', id: 'backups' });
  const none = h('p', { class: 'muted small', id: 'no-backups', text: 'No backup destination: while the destination is down, messages wait in the buffer.' });
  let seq = 0;
  const addBtn = h('button', { type: 'button', class: 'btn', id: 'add-backup', text: '+ Add backup destination' });
  // When a destination counts as failed, and how often the primary is tried for failback.
  // Only meaningful with backups: hidden without them (what is set is kept).
  const fp = spec.failover_policy || {};
  const policy = h('fieldset', { class: 'failover-policy', dataset: { block: 'failover_policy' } },
    h('legend', { text: 'When to switch, and back' }),
    h('div', { class: 'fields' },
      field({ path: 'failover_policy.failures', label: 'Failed attempts before switching', kind: 'int', keep: true, value: fp.failures, placeholder: '1', help: 'Failed attempts in a row (connection refused or lost, delivery error, acknowledgement timeout) before the next destination takes over. 1–1000.' }),
      field({ path: 'failover_policy.failed_after_ms', label: 'Not delivering for … counts as failed (ms)', kind: 'int', keep: true, value: fp.failed_after_ms, placeholder: '5000', help: 'A destination that has not delivered for this long (stuck connecting, a listening destination without a receiver) counts as failed too. 100–3600000 ms.' }),
      field({ path: 'failover_policy.probe_interval_ms', label: 'Probe the primary every (ms)', kind: 'int', keep: true, value: fp.probe_interval_ms, placeholder: '2000', help: 'While a backup delivers, how often the primary is tried; it takes over again once it answers (with failback). 100–3600000 ms.' })));
  const renumber = () => {
    const all = $$(':scope > .backup', list);
    all.forEach((b, i) => {
      $(':scope > legend', b).textContent = `Backup ${i + 1}`;
      $('[data-action="up"]', b.iobpHead).disabled = i === 0;
      $('[data-action="down"]', b.iobpHead).disabled = i === all.length - 1;
      b.dataset.index = String(i);
    });
    none.hidden = all.length > 0;
    policy.hidden = all.length === 0;
  };
  const add = (e, orig) => {
    const key = `b${++seq}`;
    const prefix = `failover.${key}`;
    const { typeField, box } = sideBlock(prefix, 'destination', e, ctx, `backup-${key}-type`);
    const button = (action, text, label) => h('button', { type: 'button', class: 'btn small', dataset: { action }, text, title: label, 'aria-label': label });
    const up = button('up', '↑ Up', 'Move up: tried earlier');
    const down = button('down', '↓ Down', 'Move down: tried later');
    const remove = h('button', { type: 'button', class: 'btn small ghost-danger', dataset: { action: 'remove' }, text: 'Remove' });
    const head = h('div', { class: 'backup-head' }, h('div', { class: 'fields' }, typeField), h('div', { class: 'btn-row' }, up, down, remove));
    const block = h('fieldset', { class: 'side backup', dataset: { backup: key, prefix, orig: orig === undefined ? '' : String(orig) } },
      h('legend', { text: 'Backup' }), head, box);
    block.iobpHead = head;
    up.addEventListener('click', () => {
      const prev = block.previousElementSibling;
      if (prev) { prev.before(block); renumber(); (up.disabled ? down : up).focus(); }
    });
    down.addEventListener('click', () => {
      const next = block.nextElementSibling;
      if (next) { next.after(block); renumber(); (down.disabled ? up : down).focus(); }
    });
    remove.addEventListener('click', () => { block.remove(); renumber(); addBtn.focus(); });
    list.append(block);
    renumber();
    return block;
  };
  (spec.failover || []).forEach((e, i) => add(e, i));
  addBtn.addEventListener('click', () => { $('select', add(null)).focus(); });
  renumber();
  return h('fieldset', { class: 'backups', dataset: { block: 'failover' } },
    h('legend', { text: 'Backup destinations (failover)' }),
    h('p', { class: 'muted small', text: 'When the destination fails, delivery moves to the next backup in this order, continuing in order with the messages not yet delivered (a message in flight at the switch may arrive twice). The channel shows Yellow while a backup delivers. Each backup has its own type and settings.' }),
    list, none,
    h('div', { class: 'btn-row backup-actions' }, addBtn),
    h('div', { class: 'fields' },
      field({ path: 'failback', label: 'Return to the primary when it is back (failback)', kind: 'bool', value: spec.failback !== false, wide: true, help: 'Off: deliveries stay on the backup in use until it fails in turn. The primary can be probed when it is a TCP client, a serial port or a relay with a URL.' })),
    policy);
}
