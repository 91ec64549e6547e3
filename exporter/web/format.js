// Formatting and DOM helpers shared by the page's modules.

export const $ = (selector) => document.querySelector(selector);

const moneyFormat = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' });
const countFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const rateFormat = new Intl.NumberFormat('en-US', { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const clockFormat = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit', second: '2-digit' });

export const money = (n) => moneyFormat.format(n ?? 0);
export const count = (n) => countFormat.format(n ?? 0);
export const rate = (n) => rateFormat.format(n ?? 0);
export const percent = (share) => `${rateFormat.format((share ?? 0) * 100)}%`;
export const clock = (iso) => (iso ? clockFormat.format(new Date(iso)) : '—');
export const plural = (n, word) => `${count(n)} ${word}${n === 1 ? '' : 's'}`;

/** Seconds as m:ss, or h:mm:ss from an hour on (4:05, 1:02:09). */
export function duration(seconds) {
  const total = Math.max(0, Math.round(seconds ?? 0));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

/** Long stretches of time in words (the engagement totals run to hours). */
export function timeSpent(seconds) {
  if (seconds >= 3600) return `${rate(seconds / 3600)} h`;
  if (seconds >= 60) return `${count(seconds / 60)} min`;
  return `${count(seconds)} s`;
}

/** Create an element with attributes and children (strings become text, never HTML). */
export function make(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

/** GET (or other) JSON; throws an Error carrying `status` on a non-2xx answer. */
export async function getJson(url, options) {
  const response = await fetch(url, { headers: { Accept: 'application/json' }, ...options });
  if (!response.ok) throw Object.assign(new Error(`${url}: ${response.status}`), { status: response.status });
  return response.json();
}
