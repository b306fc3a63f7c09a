// Every visible string comes from one catalogue per language (i18n/fr.json, i18n/en.json).
const LANGS = ['fr', 'en'];
let lang = 'fr';
let catalogue = {};

export function currentLang() { return lang; }

export function locale() { return lang === 'fr' ? 'fr-FR' : 'en-GB'; }

export async function loadLang(wanted) {
  lang = LANGS.includes(wanted) ? wanted : 'fr';
  const r = await fetch(`/dashboard/static/i18n/${lang}.json`);
  catalogue = await r.json();
  document.documentElement.lang = lang;
  try { localStorage.setItem('beffroi.lang', lang); } catch { /* private mode */ }
}

export function savedLang() {
  try { return localStorage.getItem('beffroi.lang') || 'fr'; } catch { return 'fr'; }
}

// t('key', {name: 'x'}) -> the catalogue's text with {name} replaced; the key if missing.
export function t(key, params = {}) {
  const text = catalogue[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (m, k) => (k in params ? String(params[k]) : m));
}
