// Problems shown in forms: each next to the field whose `data-path` is the problem's JSON
// path (the server's `problems[].path`, or a check of the page), the rest in the form's
// `.form-error` box. Editing a marked field removes its mark.

import { $, $$, clear, h, replace } from './dom.js';

/** Removes the problems shown in a form. */
export function clearProblems(form) {
  $$('.field-error', form).forEach((e) => e.remove());
  $$('.field.invalid', form).forEach((e) => e.classList.remove('invalid'));
  $$('[aria-invalid]', form).forEach((e) => e.removeAttribute('aria-invalid'));
  const box = $('.form-error', form);
  if (box) { box.hidden = true; clear(box); }
}

/**
 * Shows problems ({path, message}) next to the fields whose data-path matches (or the
 * nearest parent path); the rest, and a summary, in the form's .form-error box.
 */
export function showProblems(form, problems, summary) {
  clearProblems(form);
  const unplaced = [];
  let first = null;
  for (const p of problems) {
    let path = p.path || '';
    let input = null;
    while (path) {
      input = form.querySelector(`[data-path="${CSS.escape(path)}"]`);
      if (input && !input.closest('[hidden]')) break;
      input = null;
      const cut = Math.max(path.lastIndexOf('.'), path.lastIndexOf('['));
      path = cut > 0 ? path.slice(0, cut) : '';
    }
    if (!input) { unplaced.push(p); continue; }
    const field = input.closest('.field') || input.parentElement;
    field.classList.add('invalid');
    input.setAttribute('aria-invalid', 'true');
    const msg = (p.path && path !== p.path) ? `${p.path}: ${p.message}` : p.message;
    field.append(h('div', { class: 'field-error', dataset: { for: p.path }, text: msg }));
    if (!first) first = input;
  }
  const box = $('.form-error', form);
  if (box) {
    const lines = unplaced.map((p) => (p.path ? `${p.path}: ${p.message}` : p.message));
    box.dataset.unplaced = String(lines.length);
    const head = summary || (problems.length ? 'Please correct the marked fields.' : '');
    if (head || lines.length) {
      replace(box, h('strong', { text: head || 'The change was refused.' }),
        lines.length ? h('ul', null, lines.map((l) => h('li', { text: l }))) : null);
      box.hidden = false;
    }
  }
  if (first) first.focus();
  else if (box && !box.hidden) box.scrollIntoView({ block: 'nearest' });
}

// Editing a marked field removes its mark (a select or checkbox: choosing another value).
function unmark(ev) {
  const field = ev.target.closest && ev.target.closest('.field.invalid');
  if (!field) return;
  field.classList.remove('invalid');
  $$('.field-error', field).forEach((e) => e.remove());
  $$('[aria-invalid]', field).forEach((e) => e.removeAttribute('aria-invalid'));
  // The summary goes too once every marked field was edited (and nothing else was wrong).
  const form = field.closest('form');
  const box = form && $('.form-error', form);
  if (box && box.dataset.unplaced === '0' && !$('.field.invalid', form)) box.hidden = true;
}
document.addEventListener('input', unmark);
document.addEventListener('change', unmark);

/** Shows an API error in a form: problems next to fields, else the message. */
export function showError(form, err) {
  if (err.problems && err.problems.length) showProblems(form, err.problems);
  else showProblems(form, [{ path: '', message: err.message }], 'The change was refused.');
}
