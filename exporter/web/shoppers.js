// The Shopper Details table: one page of shoppers from GET /api/shoppers at a time, so search,
// filters and sorting reach every tracked shopper while the DOM holds at most one page of rows.

import { activityLabel, activityStyle } from './colors.js';
import { $, count, duration, getJson, make, money, plural } from './format.js';

const PAGE_SIZE = 25;
export const REFRESH_MS = 5_000;

export const table = {
  rows: new Map(), // userId → { view, receivedAt }: the page shown
  total: 0,
  cursors: [null], // the cursor of each page reached, so Previous can step back
  page: 0,
  next: null,
  loaded: false,
  loadedAt: 0,
  request: 0, // only the newest answer is drawn
  inFlight: false,
  again: null, // { background }: asked for while a request was out; sent once that one is back
};

function query() {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE), sort: $('#shopper-sort').value });
  const q = $('#shopper-search').value.trim();
  if (q) params.set('q', q);
  if ($('#shopper-online-only').checked) params.set('online', 'true');
  const activity = $('#shopper-activity').value;
  if (activity) params.set('activity', activity);
  const cursor = table.cursors[table.page];
  if (cursor) params.set('cursor', cursor);
  return params;
}

/** True while the keyboard is on a row: background refreshes then hold the rows still. */
export const rowsHaveFocus = () => Boolean(document.activeElement?.closest?.('#shopper-rows'));

const filtered = () => Boolean($('#shopper-search').value.trim() || $('#shopper-online-only').checked
  || $('#shopper-activity').value);

/**
 * Fetch the current page (again); `onPage` draws it. At most one request is out at a time: a
 * query typed meanwhile goes as soon as it is back, so typing costs no wait and no pile-up.
 * A `background` refresh that comes back while the keyboard is on a row is not drawn, so the
 * row a keyboard user is on never moves or vanishes under them.
 */
export async function loadShopperPage(onPage, { background = false } = {}) {
  if (table.inFlight) {
    // One request to send once this one is back; a user's own request outranks a refresh.
    table.again = { background: background && (table.again?.background ?? true) };
    return;
  }
  table.inFlight = true;
  table.again = null;
  const mine = ++table.request;
  const started = performance.now();
  try {
    const reply = await getJson(`/api/shoppers?${query()}`);
    if (mine !== table.request) return; // a newer search is on its way
    if (background && table.loaded && rowsHaveFocus()) return;
    const receivedAt = Date.now();
    table.rows = new Map(reply.shoppers.map((view) => [view.userId, { view, receivedAt }]));
    table.total = reply.total;
    table.next = reply.nextCursor;
    table.loaded = true;
    table.loadedAt = Date.now();
    onPage();
    $('#shopper-table').dataset.loadMs = String(Math.round(performance.now() - started));
  } catch {
    // keep what we have; the next refresh tries again
  } finally {
    table.inFlight = false;
    if (table.again) loadShopperPage(onPage, table.again);
  }
}

/** Start over from the first page (the search, a filter or the sort changed). */
export function restart(onPage) {
  table.cursors = [null];
  table.page = 0;
  loadShopperPage(onPage);
}

export function turnPage(step, onPage) {
  if (step > 0 && !table.next) return;
  if (step < 0 && table.page === 0) return;
  if (step > 0) table.cursors[table.page + 1] = table.next;
  table.page += step;
  loadShopperPage(onPage).then(() => $(step > 0 ? '#shopper-next' : '#shopper-prev').focus());
}

/** Session length now: the server's figure plus the time since we received it, while online. */
export function liveSessionSeconds({ view, receivedAt }) {
  const base = view.sessionSeconds ?? 0;
  return view.online ? base + (Date.now() - receivedAt) / 1000 : base;
}

const shopperRows = new Map(); // userId → <tr>, reused so focus survives updates

export function renderShopperTable(summary) {
  const shown = [...table.rows.values()];
  const body = $('#shopper-rows');
  const keep = new Set(shown.map(({ view }) => view.userId));
  for (const [id, row] of shopperRows) {
    if (!keep.has(id)) {
      row.remove();
      shopperRows.delete(id);
    }
  }
  shown.forEach((entry, index) => {
    const row = shopperRows.get(entry.view.userId) ?? createShopperRow(entry.view.userId);
    updateShopperRow(row, entry);
    if (body.children[index] !== row) body.insertBefore(row, body.children[index] ?? null);
  });
  if (!shown.length) {
    const text = !table.loaded ? 'Loading shoppers…'
      : (filtered() ? 'No shopper matches the search' : 'No shoppers yet');
    body.replaceChildren(make('tr', { class: 'empty' }, make('td', { colspan: '7' }, text)));
  } else {
    body.querySelector('tr.empty')?.remove();
  }
  renderCounts(summary, shown.length);
  renderActivityOptions(summary);
}

function renderCounts(summary, shownCount) {
  const first = table.page * PAGE_SIZE + (shownCount ? 1 : 0);
  const last = table.page * PAGE_SIZE + shownCount;
  const counter = $('#shopper-count');
  counter.dataset.total = String(table.total);
  const tracked = summary?.trackedShoppers;
  const online = summary?.activeShoppers;
  counter.dataset.tracked = String(tracked ?? '');
  counter.dataset.online = String(online ?? '');
  const whole = summary ? `${plural(tracked, 'shopper')} tracked, ${count(online)} online` : '';
  const matches = `${count(table.total)} ${table.total === 1 ? 'match' : 'matches'}`;
  counter.textContent = filtered() ? `${matches} · ${whole}` : whole;
  $('#shopper-range').textContent = table.total
    ? `${count(first)}–${count(last)} of ${count(table.total)}` : '';
  $('#shopper-prev').disabled = table.page === 0;
  $('#shopper-next').disabled = !table.next;
}

function renderActivityOptions(summary) {
  const select = $('#shopper-activity');
  const names = new Set((summary?.activityDistribution ?? []).map((d) => d.activity));
  if (select.value) names.add(select.value);
  const have = [...select.options].slice(1).map((o) => o.value);
  const want = [...names].sort((a, b) => activityLabel(a).localeCompare(activityLabel(b)));
  if (have.join('\n') === want.join('\n')) return;
  const chosen = select.value;
  select.replaceChildren(select.options[0], ...want.map((name) => make('option', { value: name }, activityLabel(name))));
  select.value = chosen;
}

function createShopperRow(userId) {
  const row = make('tr', { 'data-user': userId });
  row.innerHTML = `
    <td data-label="Status"><span class="presence"><span class="dot"></span><span class="presence-text"></span></span></td>
    <td data-label="Shopper"><button type="button" class="link shopper-name"></button><span class="shopper-id muted"></span></td>
    <td data-label="Location" class="location"></td>
    <td data-label="Session" class="num session"></td>
    <td data-label="Cart" class="num cart"><span class="cart-value"></span> <span class="cart-items muted"></span></td>
    <td data-label="Activity"><span class="badge activity"></span></td>
    <td data-label="Membership"><span class="membership"></span></td>`;
  shopperRows.set(userId, row);
  return row;
}

// Only touch text that changed, so screen readers and selection are not disturbed every second.
function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function updateShopperRow(row, entry) {
  const { view } = entry;
  row.classList.toggle('offline', !view.online);
  setText(row.querySelector('.presence-text'), view.online ? 'Online' : 'Offline');
  setText(row.querySelector('.shopper-name'), view.userName || view.userId);
  setText(row.querySelector('.shopper-id'), view.userId);
  setText(row.querySelector('.location'), view.location || '—');
  setText(row.querySelector('.session'), duration(liveSessionSeconds(entry)));
  setText(row.querySelector('.cart-value'), money(view.cartValue));
  setText(row.querySelector('.cart-items'), plural(view.itemsInCart ?? 0, 'item'));
  const badge = row.querySelector('.activity');
  setText(badge, view.activeFeature ? activityLabel(view.activeFeature) : '—');
  badge.setAttribute('style', activityStyle(view.activeFeature || 'unknown'));
  const membership = row.querySelector('.membership');
  setText(membership, view.membershipType || '—');
  membership.dataset.tier = (view.membershipType || '').toLowerCase().replaceAll('+', '-plus').replace(/[^a-z-]+/g, '-');
}
