// Shared by the pages: API calls with the bearer token, formatting, DOM building.
// Every figure carries data-value = the API's raw value, so tests (and people with
// dev tools) can compare it with the API exactly; the visible text is formatted.

export const TOKEN_KEY = "ca-api-token";

export class AuthError extends Error {}

export class ApiError extends Error {
  constructor(status, code, detail, body = {}) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.body = body;  // the whole answer (e.g. a 409's decision)
  }
}

export function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// A fetch with the token whose answer is 2xx; AuthError on 401, ApiError otherwise.
export async function request(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { Accept: "application/json", ...authHeaders(), ...(options.headers || {}) },
  });
  if (response.status === 401) throw new AuthError("a valid API token is required");
  if (!response.ok) {
    let body = {};
    try { body = await response.json(); } catch { /* not JSON: keep the status */ }
    throw new ApiError(response.status, body.error, body.detail, body);
  }
  return response;
}

export async function api(path, options = {}) {
  return (await request(path, options)).json();
}

// The token form: shown when the API answers 401; the token is kept for this tab only.
export function askForToken(onToken) {
  const form = document.getElementById("token-form");
  const input = document.getElementById("token-input");
  form.hidden = false;
  input.focus();
  form.onsubmit = (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    form.hidden = true;
    input.value = "";
    onToken();
  };
}

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

export const raw = (value) => (value === null || value === undefined ? "" : String(value));

const integer = new Intl.NumberFormat("en-US");
export const count = (value) => (value === null || value === undefined ? "–" : integer.format(value));

export function percent(value, digits = 1) {
  if (value === null || value === undefined) return "–";
  return `${(value * 100).toFixed(digits)} %`;
}

export function signedPercent(value) {
  if (value === null || value === undefined) return "–";
  const text = `${(Math.abs(value) * 100).toFixed(1)} %`;
  return value > 0 ? `+${text}` : value < 0 ? `−${text}` : text;
}

const stamp = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
export function time(iso) {
  if (!iso) return "–";
  const at = new Date(iso);
  return Number.isNaN(at.getTime()) ? iso : stamp.format(at);
}

// A table cell showing `text` and carrying the raw value.
export function cell(field, value, text, attribute = "data-field") {
  return el("td", { [attribute]: field, "data-value": raw(value), text });
}

export function timeCell(field, iso) {
  const td = cell(field, iso, time(iso));
  if (iso) td.title = iso;
  return td;
}

export function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = !message;
}
