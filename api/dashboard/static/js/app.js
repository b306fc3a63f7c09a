// Start-up: configuration, language, sign-in state, and the routes in the URL fragment
// (#/ville, #/stationnement?site=..., ...).
import { loadLang, savedLang, currentLang, t } from './i18n.js';
import { setTimeZone } from './fmt.js';
import { token, clearToken, setUnauthorizedHandler } from './api.js';
import { el, clear } from './dom.js';
import * as pages from './pages.js';

const ROUTES = [
  { path: 'ville', label: 'nav.overview', page: pages.overview },
  { path: 'stationnement', label: 'nav.parking', page: pages.parking },
  { path: 'energie', label: 'nav.energy', page: pages.energy },
  { path: 'wifi', label: 'nav.wifi', page: pages.wifi },
  { path: 'equipements', label: 'nav.devices', page: pages.devices },
  { path: 'exploitation', label: 'nav.operate', page: pages.operate },
];

const main = document.getElementById('main');
let leave = () => {};
let rendering = 0;

function parseHash() {
  const h = location.hash.replace(/^#\/?/, '');
  const [path, q] = h.split('?');
  return { path: path || 'ville', params: Object.fromEntries(new URLSearchParams(q || '')) };
}

const app = {
  config: { refresh_s: 15, tile_url: null, timezone: 'Europe/Paris' },
  status(text, kind = 'info') {
    const s = document.getElementById('status');
    s.textContent = text;
    s.className = `status ${text ? kind : ''}`;
  },
  signedIn() { renderChrome(); },
};

function renderChrome() {
  const nav = document.getElementById('nav');
  clear(nav);
  const { path } = parseHash();
  const signed = Boolean(token());
  const list = el('ul');
  if (signed) {
    for (const r of ROUTES) {
      const a = el('a', { href: `#/${r.path}` }, t(r.label));
      if (r.path === path) a.setAttribute('aria-current', 'page');
      list.append(el('li', {}, a));
    }
  }
  nav.append(list);
  document.getElementById('brand-title').textContent = t('app.title');
  document.getElementById('skip-link').textContent = t('app.skip');
  document.getElementById('foot-text').textContent = t('app.footer', { tz: app.config.timezone });
  document.getElementById('foot-opendata').textContent = t('app.opendata');
  const out = document.getElementById('sign-out');
  out.hidden = !signed;
  out.textContent = t('app.sign_out');
  const sw = document.getElementById('lang-switch');
  const other = currentLang() === 'fr' ? 'en' : 'fr';
  sw.textContent = other === 'en' ? 'English' : 'Français';
  sw.setAttribute('lang', other);
  sw.setAttribute('aria-label', other === 'en' ? 'Switch to English' : 'Passer en français');
}

async function render() {
  const n = ++rendering;
  leave();
  leave = () => {};
  app.status('');
  let { path, params } = parseHash();
  if (!token() && path !== 'connexion') {
    history.replaceState(null, '', '#/connexion');
    ({ path, params } = parseHash());
  }
  renderChrome();
  clear(main);
  const route = ROUTES.find((r) => r.path === path);
  const page = path === 'connexion' ? pages.signIn : route ? route.page : null;
  const title = path === 'connexion' ? t('signin.title') : route ? t(route.label) : t('err.no_page');
  document.title = `${title} — ${t('app.title')}`;
  if (!page) {
    main.append(el('h1', {}, t('err.no_page')), el('p', {}, el('a', { href: '#/ville' }, t('nav.overview'))));
    return;
  }
  const cleanup = await page(main, params, app);
  if (n !== rendering) { if (cleanup) cleanup(); return; }
  leave = cleanup || (() => {});
}

async function boot() {
  const config = fetch('/dashboard/config.json').then((r) => (r.ok ? r.json() : null)).catch(() => null);
  await loadLang(savedLang());
  app.config = (await config) || app.config;
  setTimeZone(app.config.timezone || 'Europe/Paris');
  setUnauthorizedHandler(() => {
    clearToken();
    location.hash = '#/connexion?reason=expired';
  });
  // the routes live in the fragment: the skip link moves the focus without changing it
  document.getElementById('skip-link').addEventListener('click', (ev) => {
    ev.preventDefault();
    main.focus();
  });
  document.getElementById('lang-switch').addEventListener('click', async () => {
    await loadLang(currentLang() === 'fr' ? 'en' : 'fr');
    render();
  });
  document.getElementById('sign-out').addEventListener('click', () => {
    clearToken();
    location.hash = '#/connexion?reason=signed_out';
  });
  window.addEventListener('hashchange', () => {
    const { path } = parseHash();
    // panels rewrite their own parameters with replaceState; a real change of page re-renders
    render();
    if (path) main.focus({ preventScroll: true });
  });
  render();
}

window.addEventListener('DOMContentLoaded', boot);
