// Confirmation dialogs: a modal <dialog> (the browser moves focus into it, keeps it there and
// closes it on Escape), labelled by its title, with the focus returned to the button that
// opened it. No `method="dialog"` form: the CSP's `form-action 'none'` is left untested
// territory, so submission is handled in script.

import { h, fill } from './dom.js';

let seq = 0;

/**
 * Resolves with the form's elements when confirmed (after `validate(elements)` returned null),
 * or null when cancelled.
 */
export function openDialog({ title, explain, fields = [], confirmLabel = 'Confirm', danger = false, validate = () => null, opener = document.activeElement }) {
  return new Promise((resolve) => {
    const titleId = `dialog-title-${++seq}`;
    const form = h('form.dialog-form', { noValidate: true });
    const error = h('p.notice.error', { hidden: true, attrs: { role: 'alert' } });
    const confirm = h('button', { type: 'submit', class: danger ? 'danger' : 'primary' }, confirmLabel);
    const cancel = h('button.quiet', { type: 'button' }, 'Cancel');
    fill(form, h('h2', { id: titleId }, title), explain ? h('p', explain) : null, fields, error, h('div.button-row.end', cancel, confirm));
    const dialog = h('dialog.confirm', { attrs: { 'aria-labelledby': titleId } }, form);
    document.body.append(dialog);
    let result = null;
    dialog.addEventListener('close', () => {
      dialog.remove();
      if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
      resolve(result);
    });
    cancel.addEventListener('click', () => dialog.close());
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const problem = validate(form.elements);
      if (problem) { error.textContent = problem; error.hidden = false; return; }
      result = form.elements;
      dialog.close();
    });
    dialog.showModal();
    (form.querySelector('textarea, input, select') || (danger ? cancel : confirm)).focus();
  });
}
