// The exact `gpumesh` commands for actions that move money. Keys never go to a server: the
// console shows what to run, and the wallet signs on the user's machine.

import { h } from './dom.js';
import { copyable } from './dom.js';

/** Quotes a shell word when it needs it. */
function word(w) {
  const s = String(w);
  return /^[A-Za-z0-9_./:=,@%+-]+$/.test(s) ? s : `'${s.replaceAll("'", "'\\''")}'`;
}

/** `gpumesh <args…>` for this market and cluster (the cluster's URL only where it is public). */
export function gpumesh(ctx, args, { market = true, cluster = true } = {}) {
  const parts = ['gpumesh', ...args.map(word)];
  if (market) parts.push('--market', ctx.info.market);
  if (cluster && ctx.info.cluster.cli_url) parts.push('--url', word(ctx.info.cluster.cli_url));
  return parts.join(' ');
}

/** A command to copy, with what it does and whose wallet signs it. */
export function commandBlock(title, command, note) {
  return h('div', { class: 'command' },
    h('div', { class: 'command-title' }, title),
    h('pre', {}, copyable(command, { label: `Copy the command: ${title}`, field: 'command' })),
    note ? h('p', { class: 'muted small' }, note) : null);
}

/**
 * A command built from a few inputs, updated as they change: fields are
 * [{ name, label, value, type?, options?: [[value, text]], multiple? }]; build(values) returns
 * the command.
 */
export function commandForm(title, fields, build, note) {
  const values = Object.fromEntries(fields.map((f) => [f.name, f.value]));
  const out = h('div');
  const render = () => out.replaceChildren(commandBlock(title, build(values), note));
  const inputs = fields.map((f) => {
    const id = `f-${title.replace(/\W+/g, '-')}-${f.name}`.toLowerCase();
    let input;
    if (f.options) {
      input = h('select', { id, name: f.name, multiple: f.multiple || null },
        f.options.map(([v, text]) => h('option', {
          value: v,
          selected: (f.multiple ? String(f.value).split(',').includes(v) : String(f.value) === v) || null,
        }, text)));
      input.addEventListener('change', () => {
        values[f.name] = f.multiple
          ? [...input.selectedOptions].map((o) => o.value).join(',')
          : input.value;
        render();
      });
    } else {
      input = h('input', { id, name: f.name, type: f.type || 'text', value: f.value, inputmode: f.inputmode || null, autocomplete: 'off' });
      input.addEventListener('input', () => { values[f.name] = input.value.trim(); render(); });
    }
    return h('div', { class: 'field' }, h('label', { for: id }, f.label), input);
  });
  render();
  return h('form', { class: 'command-form', onsubmit: (e) => e.preventDefault() },
    h('div', { class: 'fields' }, inputs), out);
}
