// Toasts (short notices at the bottom right) and modal dialogs, confirmations included.

import { $, h } from './dom.js';
import { diagnostics } from './diagnostics.js';

function toastBox() {
  let box = $('#toasts');
  if (!box) {
    box = h('div', { id: 'toasts', class: 'toasts', role: 'status', 'aria-live': 'polite' });
    document.body.append(box);
  }
  return box;
}

/** A short message at the bottom right; kind 'ok', 'error' or 'info'. */
export function notify(message, kind = 'info') {
  diagnostics.notices.push(`${kind}: ${message}`);
  if (diagnostics.notices.length > 50) diagnostics.notices.shift();
  const t = h('div', { class: `toast ${kind}`, text: message });
  toastBox().append(t);
  setTimeout(() => t.remove(), kind === 'error' ? 9000 : 5000);
}

/**
 * A modal dialog. `buttons`: [{label, class, value, disabled, action}]. Resolves with the
 * value of the button pressed (or null when closed); a button's `action(dialog, button)` runs
 * first and keeps the dialog open by returning false. `onOpen(dialog, buttons)` may wire
 * inputs.
 */
export const dialog = ({ title, body, buttons, wide, onOpen, id }) => new Promise((resolve) => {
  const btns = (buttons || [{ label: 'Close', value: null }]).map((b) => h('button', {
    type: 'button',
    class: `btn ${b.class || ''}`,
    disabled: b.disabled,
    dataset: { value: String(b.value) },
    text: b.label,
  }));
  const closeBtn = h('button', { type: 'button', class: 'close', 'aria-label': 'Close', text: '×' });
  const dlg = h('dialog', { class: wide ? 'wide' : undefined, id: id || undefined, 'aria-label': title },
    h('div', { class: 'dlg-head' }, h('h2', { text: title }), closeBtn),
    h('div', { class: 'dlg-body' }, body),
    h('div', { class: 'dlg-foot' }, btns));
  let result = null;
  const finish = () => { dlg.remove(); resolve(result); };
  dlg.addEventListener('close', finish);
  closeBtn.addEventListener('click', () => dlg.close());
  (buttons || [{ value: null }]).forEach((b, i) => btns[i].addEventListener('click', async () => {
    if (b.action) {
      const keep = await b.action(dlg, btns[i]);
      if (keep === false) return;
    }
    result = b.value;
    dlg.close();
  }));
  document.body.append(dlg);
  dlg.showModal();
  if (onOpen) onOpen(dlg, btns);
});

/** Asks for confirmation by typing `expect`; resolves true when confirmed. */
export function confirmTyped({ title, message, expect, confirmLabel }) {
  const input = h('input', { type: 'text', id: 'confirm-input', autocomplete: 'off', spellcheck: 'false' });
  const body = h('div', null,
    h('div', { class: 'notice warn' }, message),
    h('div', { class: 'field' },
      h('label', { for: 'confirm-input' }, 'Type ', h('code', { text: expect }), ' to confirm'),
      input));
  return dialog({
    title,
    body,
    id: 'confirm-dialog',
    buttons: [
      { label: 'Cancel', value: false },
      { label: confirmLabel || 'Delete', value: true, class: 'danger', disabled: true },
    ],
    onOpen: (dlg, btns) => {
      input.addEventListener('input', () => { btns[1].disabled = input.value !== expect; });
      input.focus();
    },
  }).then((v) => v === true);
}

/** A plain yes/no confirmation. */
export const confirm = ({ title, message, confirmLabel, danger }) => dialog({
  title,
  body: h('p', null, message),
  id: 'confirm-dialog',
  buttons: [
    { label: 'Cancel', value: false },
    { label: confirmLabel || 'OK', value: true, class: danger ? 'danger' : 'primary' },
  ],
}).then((v) => v === true);
