// Small DOM helpers (no innerHTML: every text goes through textContent).
import { t } from './i18n.js';

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'hidden') node.hidden = Boolean(v);
    else if (k === 'value') node.value = v;
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

// A clear sentence for an API error.
export function errorText(err, ctx = {}) {
  if (err.status === 404) return t('err.not_found', { what: ctx.site || ctx.device || '' });
  if (err.status === 422) {
    const d = err.detail;
    const message = typeof d === 'string' ? d : (d && d.message) || (Array.isArray(d) ? d.map((x) => x.msg || x.message).join('; ') : '');
    return t('err.refused', { message });
  }
  if (err.status === 403) return t('err.forbidden');
  if (err.status === 0) return t('err.network');
  if (err.status === 503) return t('err.unavailable');
  return t('err.generic', { status: err.status });
}
