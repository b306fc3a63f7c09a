// Calls to the API with the signed-in token (kept in sessionStorage, never in a URL).
const KEY = 'beffroi.token';

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(typeof detail === 'string' ? detail : (detail && detail.message) || code);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

export function token() { return sessionStorage.getItem(KEY); }
export function setToken(v) { sessionStorage.setItem(KEY, v); }
export function clearToken() { sessionStorage.removeItem(KEY); }

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

async function call(method, path, params, body, auth = true, notify = true) {
  const headers = { Accept: 'application/json' };
  if (auth) headers.Authorization = `Bearer ${token()}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let r;
  try {
    r = await fetch(path + query(params), { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  } catch {
    throw new ApiError(0, 'network', 'network');
  }
  let data = null;
  try { data = await r.json(); } catch { data = null; }
  if (!r.ok) {
    const err = new ApiError(r.status, data?.error || 'error', data?.detail ?? r.statusText);
    if (r.status === 401 && auth && notify) onUnauthorized(err);
    throw err;
  }
  return data;
}

export const get = (path, params) => call('GET', path, params);
// while signing in, a refused token is answered on the sign-in page itself
export const check = (path, params) => call('GET', path, params, undefined, true, false);
export const post = (path, body) => call('POST', path, undefined, body ?? {});
export const postNoAuth = (path, body) => call('POST', path, undefined, body, false);
