// Live Shopper Metrics — the store's live page.
// Live data comes through the browser client (/client/metrics-service.js), the same one shops
// use: the summary each second, shoppers as they change, events once each across reconnects.
// The shopper list is read from /api/shoppers at start and after a lost connection.

import { DURATION_STEPS, barChart, pieChart, timeSeriesChart } from './charts.js';
import { MetricsService } from '../client/metrics-service.js';

const HISTORY_SECONDS = 5 * 60;
const EVENTS_KEPT = 500; // more than shown, so type and shopper filters still find rare events
const EVENTS_SHOWN = 50;
const SHOPPERS_SHOWN = 200;
const RECONCILE_MS = 60_000;

const $ = (selector) => document.querySelector(selector);

// ---------------------------------------------------------------- formatting

const moneyFormat = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' });
const countFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const rateFormat = new Intl.NumberFormat('en-US', { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const clockFormat = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit', second: '2-digit' });

const money = (n) => moneyFormat.format(n ?? 0);
const count = (n) => countFormat.format(n ?? 0);
const rate = (n) => rateFormat.format(n ?? 0);
const percent = (share) => `${rateFormat.format((share ?? 0) * 100)}%`;
const clock = (iso) => (iso ? clockFormat.format(new Date(iso)) : '—');
const plural = (n, word) => `${count(n)} ${word}${n === 1 ? '' : 's'}`;

/** Seconds as m:ss, or h:mm:ss from an hour on (4:05, 1:02:09). */
function duration(seconds) {
  const total = Math.max(0, Math.round(seconds ?? 0));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

/** Long stretches of time in words (the engagement totals run to hours). */
function timeSpent(seconds) {
  if (seconds >= 3600) return `${rate(seconds / 3600)} h`;
  if (seconds >= 60) return `${count(seconds / 60)} min`;
  return `${count(seconds)} s`;
}

const EVENT_LABELS = {
  session_started: 'Session started', session_ended: 'Session ended', product_viewed: 'Product viewed',
  search: 'Search', cart_add: 'Cart add', cart_remove: 'Cart remove', checkout_started: 'Checkout',
  order_completed: 'Order', delivery_scheduled: 'Delivery', coupon_applied: 'Coupon',
  cart_abandoned: 'Abandoned', alert: 'Alert',
};
const eventLabel = (type) => EVENT_LABELS[type] ?? type.replaceAll('_', ' ');

// Each activity keeps one hue everywhere (badges, pie, bars) so the eye can follow it.
const ACTIVITY_HUES = { Browsing: 210, Search: 268, Product: 188, Cart: 145, Checkout: 35,
  Delivery: 320, Deals: 5, Account: 60 };
function activityHue(name = '') {
  if (name in ACTIVITY_HUES) return ACTIVITY_HUES[name];
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) % 360;
  return hash;
}
const activityColor = (name) => `hsl(${activityHue(name)} 62% var(--chart-lightness))`;

// ---------------------------------------------------------------- state

const store = {
  summary: null,
  history: [], // [{ at: client ms, summary }], oldest first, the last HISTORY_SECONDS
  shoppers: new Map(), // userId → { view: ShopperView, receivedAt: client ms }
  events: [], // EventView, newest first; each gets a local `seq` that survives server restarts
  eventSeq: 0,
  newestEventId: 0, // the server's id of the newest event applied, to skip replayed duplicates
  paused: false,
  eventsWhilePaused: 0,
};

// The page's files sit in /static/ beside /client/: the exporter is the folder above.
const live = new MetricsService({ baseUrl: new URL('../', import.meta.url).href });
let connectionState = 'connecting';

// ---------------------------------------------------------------- rendering scheduler

// Frames arrive many times a second; parts are marked dirty and drawn at most once per frame,
// and only when visible, so a hidden tab costs nothing until it is opened.
const dirty = new Set();
let frameRequested = false;

function invalidate(...parts) {
  for (const part of parts) dirty.add(part);
  if (!frameRequested) {
    frameRequested = true;
    requestAnimationFrame(renderDirty);
  }
}

function renderDirty() {
  frameRequested = false;
  if (store.paused) return;
  for (const part of [...dirty]) {
    const panel = PANEL_OF[part];
    if (panel && $(`#${panel}`).hidden) continue;
    RENDERERS[part]();
    dirty.delete(part);
  }
}

// ---------------------------------------------------------------- connection

function setConnection(state) {
  const badge = $('#connection');
  badge.dataset.state = state;
  badge.querySelector('.connection-text').textContent = state;
  badge.title = state === 'disconnected' ? 'Lost the live stream; reconnecting automatically' : '';
}

function connectLive() {
  live.onConnectionChange((state, { reconnected, serverRestarted }) => {
    connectionState = state;
    setConnection(state);
    if (serverRestarted) {
      // Event ids start again after an exporter restart; shoppers may be gone.
      store.newestEventId = 0;
      loadShoppers();
    } else if (reconnected) {
      // Shoppers may have changed or been dropped while we were away; start again from the truth.
      loadShoppers();
      loadDemo();
    }
  });
  live.onMetricsUpdate(applySummary);
  live.onShopperUpdate(applyShopper);
  live.onEvent(applyEvent);
}

// ---------------------------------------------------------------- applying data

function applySummary(summary) {
  const now = Date.now();
  store.summary = summary;
  store.history.push({ at: now, summary });
  const cutoff = now - (HISTORY_SECONDS + 30) * 1000;
  while (store.history.length && store.history[0].at < cutoff) store.history.shift();
  // Shopper session clocks tick with the summary, so the table is redrawn too.
  invalidate('kpis', 'activity', 'behavior', 'shoppers');
}

function applyShopper(view) {
  if (!view?.userId) return;
  store.shoppers.set(view.userId, { view, receivedAt: Date.now() });
  invalidate('shoppers');
  if (dialog.userId === view.userId) renderShopperFacts(view);
}

function applyEvent(event, frame) {
  if (event.id == null && frame?.lastEventId) event.id = Number(frame.lastEventId);
  if (event.id != null) {
    if (event.id <= store.newestEventId) return; // already shown before a reconnect
    store.newestEventId = event.id;
  }
  store.eventSeq += 1;
  event.seq = store.eventSeq;
  store.events.unshift(event);
  if (store.events.length > EVENTS_KEPT) store.events.length = EVENTS_KEPT;
  if (store.paused) {
    store.eventsWhilePaused += 1;
    $('#paused-count').textContent = count(store.eventsWhilePaused);
  }
  invalidate('events');
  if (dialog.userId === event.userId) prependTimeline(event);
}

async function getJson(url, options) {
  const response = await fetch(url, { headers: { Accept: 'application/json' }, ...options });
  if (!response.ok) throw Object.assign(new Error(`${url}: ${response.status}`), { status: response.status });
  return response.json();
}

async function loadShoppers() {
  try {
    const { shoppers = [] } = await getJson(`/api/shoppers?limit=${SHOPPERS_SHOWN}`);
    const receivedAt = Date.now();
    store.shoppers = new Map(shoppers.map((view) => [view.userId, { view, receivedAt }]));
    invalidate('shoppers');
  } catch {
    // keep what we have; the next reconnect or reconcile tries again
  }
}

// ---------------------------------------------------------------- history lookups

/** The summary about `secondsAgo` old (within a quarter of that, at least 5 s), or null. */
function summaryAgo(secondsAgo) {
  const { history } = store;
  if (!history.length) return null;
  if (secondsAgo === 0) return history.at(-1).summary;
  const target = Date.now() - secondsAgo * 1000;
  let best = null;
  for (const entry of history) {
    if (!best || Math.abs(entry.at - target) < Math.abs(best.at - target)) best = entry;
  }
  const tolerance = Math.max(5, secondsAgo / 4) * 1000;
  return Math.abs(best.at - target) <= tolerance ? best.summary : null;
}

/** How much a cumulative counter grew in the minute ending `secondsAgo` ago. */
function perMinute(key) {
  return (ago) => {
    const end = summaryAgo(ago);
    const start = summaryAgo(ago + 60);
    if (!end || !start || end === start) return null;
    const grown = (end[key] ?? 0) - (start[key] ?? 0);
    return grown >= 0 ? grown : null; // negative = the exporter restarted
  };
}

const gauge = (read) => (ago) => {
  const summary = summaryAgo(ago);
  return summary ? read(summary) : null;
};

// ---------------------------------------------------------------- KPI cards

const KPIS = {
  activeShoppers: { value: (s) => s.activeShoppers, show: count,
    note: (s) => `of ${count(s.trackedShoppers)} tracked` },
  activeCarts: { value: (s) => s.activeCarts, show: count,
    note: (s) => `${plural(s.cartItems, 'item')} in carts` },
  cartValue: { value: (s) => s.totalCartValue, show: money,
    note: (s) => `average ${money(s.averageCartValue)} per cart` },
  ordersPerHour: { value: (s) => s.ordersLastHour, show: count,
    note: (s) => `${money(s.orderValueLastHour)} ordered in the last hour` },
  sessionDuration: { value: (s) => s.averageSessionSeconds, show: duration,
    note: () => 'average, online shoppers (m:ss)' },
  cartAbandonment: { value: (s) => s.cartAbandonmentRate, show: percent,
    note: (s) => `${plural(s.abandonmentsLastHour, 'cart')} left in the last hour` },
  productViews: { value: (s) => s.productViews, show: count,
    note: () => lastMinuteNote('productViews', 'in the last minute', 'total since start') },
  searchActivity: { value: (s) => s.searches, show: count,
    note: () => lastMinuteNote('searches', 'searches in the last minute', 'searches since start') },
};

function lastMinuteNote(key, suffix, fallback) {
  const grown = perMinute(key)(0);
  return grown == null ? fallback : `+${count(grown)} ${suffix}`;
}

function renderKpis() {
  const summary = store.summary;
  if (!summary) return;
  $('.kpis').dataset.updated = summary.time ?? ''; // lets tests and people see the figures are fresh
  for (const [name, kpi] of Object.entries(KPIS)) {
    const card = document.querySelector(`[data-kpi="${name}"]`);
    const value = kpi.value(summary);
    card.querySelector('.kpi-value').textContent = kpi.show(value);
    card.querySelector('.kpi-value').dataset.value = String(value ?? '');
    card.querySelector('[data-note]').textContent = kpi.note(summary);
  }
}

// ---------------------------------------------------------------- real-time activity tab

function series(read) {
  return store.history.map(({ at, summary }) => [at, read(summary) ?? 0]);
}

// Items per minute over a trailing 10 s window: per-second deltas are too spiky to read.
function cartRateSeries(key) {
  const points = [];
  const { history } = store;
  let from = 0;
  for (let i = 1; i < history.length; i += 1) {
    while (history[i].at - history[from].at > 10_000) from += 1;
    const start = history[Math.min(from, i - 1)];
    const seconds = (history[i].at - start.at) / 1000;
    const grown = (history[i].summary[key] ?? 0) - (start.summary[key] ?? 0);
    if (seconds > 0 && grown >= 0) points.push([history[i].at, (grown / seconds) * 60]);
  }
  return points;
}

function renderActivity() {
  const now = Date.now();
  timeSeriesChart($('#chart-active-shoppers'), { now, formatValue: count,
    series: [{ points: series((s) => s.activeShoppers), className: 'series-shoppers', area: true }] });
  timeSeriesChart($('#chart-events-per-second'), { now, formatValue: rate,
    series: [{ points: series((s) => s.eventsPerSecond), className: 'series-events' }] });
  timeSeriesChart($('#chart-session-duration'), { now, formatValue: duration, steps: DURATION_STEPS,
    series: [{ points: series((s) => s.averageSessionSeconds), className: 'series-session', area: true }] });
  timeSeriesChart($('#chart-cart-actions'), { now, formatValue: count,
    series: [
      { points: cartRateSeries('cartItemsAdded'), className: 'series-added' },
      { points: cartRateSeries('cartItemsRemoved'), className: 'series-removed' },
    ] });

  const summary = store.summary;
  if (!summary) return;
  showLatest('active-shoppers', 'activeShoppers', count(summary.activeShoppers));
  showLatest('events-per-second', 'eventsPerSecond', `${rate(summary.eventsPerSecond)}/s`);
  showLatest('session-duration', 'averageSessionSeconds', duration(summary.averageSessionSeconds));
  renderTopActivities(summary.topActivities ?? (summary.activityDistribution ?? []).slice(0, 5));
}

// The figure next to a chart's title, repeated in the chart's label for screen readers.
function showLatest(chart, key, text) {
  $(`[data-latest="${key}"]`).textContent = text;
  const svg = $(`#chart-${chart}`);
  const base = svg.dataset.label ?? svg.getAttribute('aria-label');
  svg.dataset.label = base;
  svg.setAttribute('aria-label', `${base}; now ${text}`);
}

function renderTopActivities(top) {
  const list = $('#top-activities');
  if (!top.length) {
    list.replaceChildren(make('li', { class: 'empty' }, 'No shoppers online right now'));
    return;
  }
  list.replaceChildren(...top.map((item, i) => {
    const card = make('li', { class: 'activity-card', style: `--hue: ${activityHue(item.activity)}` });
    card.append(
      make('span', { class: 'rank' }, `#${i + 1}`),
      make('span', { class: 'activity-name' }, item.activity),
      make('span', { class: 'activity-count' }, plural(item.shoppers, 'shopper')),
      make('span', { class: 'share-bar', 'aria-hidden': 'true' },
        make('span', { style: `width: ${(item.share * 100).toFixed(1)}%` })),
      make('span', { class: 'muted' }, `${percent(item.share)} of online shoppers`),
    );
    return card;
  }));
}

// ---------------------------------------------------------------- shopper details tab

const shopperRows = new Map(); // userId → <tr>, reused so focus and scroll survive updates

/** Session length now: the server's figure plus the time since we received it, while online. */
function liveSessionSeconds({ view, receivedAt }) {
  const base = view.sessionSeconds ?? 0;
  return view.online ? base + (Date.now() - receivedAt) / 1000 : base;
}

function matchesShopper(view, query) {
  if (!query) return true;
  return `${view.userName ?? ''} ${view.userId}`.toLowerCase().includes(query);
}

function renderShoppers() {
  const query = $('#shopper-search').value.trim().toLowerCase();
  const onlineOnly = $('#shopper-online-only').checked;
  const all = [...store.shoppers.values()];
  const shown = all
    .filter(({ view }) => (!onlineOnly || view.online) && matchesShopper(view, query))
    // online first, then by name: a stable order, so rows do not jump around every second
    .sort((a, b) => (b.view.online - a.view.online)
      || String(a.view.userName).localeCompare(String(b.view.userName))
      || a.view.userId.localeCompare(b.view.userId))
    .slice(0, SHOPPERS_SHOWN);

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
    body.replaceChildren(make('tr', { class: 'empty' },
      make('td', { colspan: '7' }, all.length ? 'No shopper matches the search' : 'No shoppers yet')));
  } else {
    body.querySelector('tr.empty')?.remove();
  }
  const online = all.filter(({ view }) => view.online).length;
  $('#shopper-count').textContent = `${plural(all.length, 'shopper')}, ${count(online)} online`
    + (shown.length < all.length ? ` — showing ${count(shown.length)}` : '');
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
  setText(badge, view.activeFeature || '—');
  badge.style.setProperty('--hue', activityHue(view.activeFeature));
  const membership = row.querySelector('.membership');
  setText(membership, view.membershipType || '—');
  membership.dataset.tier = (view.membershipType || '').toLowerCase().replaceAll('+', '-plus').replace(/[^a-z-]+/g, '-');
}

// ---------------------------------------------------------------- shopper dialog

const dialog = { userId: null, opener: null };

async function openShopper(userId) {
  const element = $('#shopper-dialog');
  dialog.userId = userId;
  dialog.opener = document.activeElement;
  const entry = store.shoppers.get(userId);
  $('#shopper-dialog-title').textContent = entry?.view.userName ?? userId;
  if (entry) renderShopperFacts(entry.view);
  else $('#shopper-facts').replaceChildren();
  const timeline = $('#shopper-timeline');
  timeline.replaceChildren(make('li', { class: 'empty' }, 'Loading…'));
  if (!element.open) element.showModal();
  try {
    const { events = [] } = await getJson(`/api/shoppers/${encodeURIComponent(userId)}/events?limit=50`);
    if (dialog.userId !== userId) return;
    timeline.replaceChildren(...events.map(timelineItem));
    if (!events.length) timeline.append(make('li', { class: 'empty' }, 'No events for this shopper yet'));
  } catch (error) {
    if (dialog.userId !== userId) return;
    timeline.replaceChildren(make('li', { class: 'empty' },
      error.status === 404 ? 'This shopper is no longer tracked' : 'Could not load the timeline'));
  }
}

function renderShopperFacts(view) {
  const facts = [
    ['Status', view.online ? 'Online' : 'Offline'],
    ['Shopper id', view.userId],
    ['Location', view.location || '—'],
    ['Membership', view.membershipType || '—'],
    ['Delivery window', view.deliveryWindow || '—'],
    ['Current activity', view.activeFeature || '—'],
    ['Session', duration(liveSessionSeconds(store.shoppers.get(view.userId) ?? { view, receivedAt: Date.now() }))],
    ['Cart', `${money(view.cartValue)} · ${plural(view.itemsInCart ?? 0, 'item')}`],
    ['Products viewed', count(view.productsViewed)],
    ['Searches', count(view.searchesPerformed)],
    ['Page views', count(view.pageViews)],
    ['Coupons applied', count(view.couponsApplied)],
    ['Last action', view.lastAction ? `${view.lastAction} (${clock(view.lastActionTime)})` : '—'],
    ['Activities used', (view.featuresUsed ?? []).join(', ') || '—'],
  ];
  $('#shopper-facts').replaceChildren(...facts.flatMap(([term, detail]) => [
    make('dt', {}, term), make('dd', {}, detail)]));
}

function timelineItem(event) {
  return make('li', {},
    make('time', { datetime: event.time }, clock(event.time)),
    typeBadge(event.type),
    make('span', {}, event.message || eventLabel(event.type)));
}

function prependTimeline(event) {
  const timeline = $('#shopper-timeline');
  timeline.querySelector('li.empty')?.remove();
  timeline.prepend(timelineItem(event));
  while (timeline.children.length > 50) timeline.lastElementChild.remove();
}

function closeShopper() {
  const element = $('#shopper-dialog');
  if (element.open) element.close();
}

// ---------------------------------------------------------------- shopping behavior tab

const STORE_STATS = [
  { label: 'Active shoppers', read: gauge((s) => s.activeShoppers), show: count },
  { label: 'Active carts', read: gauge((s) => s.activeCarts), show: count },
  { label: 'Items in carts', read: gauge((s) => s.cartItems), show: count },
  { label: 'Total cart value', read: gauge((s) => s.totalCartValue), show: money },
  { label: 'Average cart value', read: gauge((s) => s.averageCartValue), show: money },
  { label: 'Orders in the last hour', read: gauge((s) => s.ordersLastHour), show: count },
  { label: 'Order value in the last hour', read: gauge((s) => s.orderValueLastHour), show: money },
  { label: 'Cart abandonment rate', read: gauge((s) => s.cartAbandonmentRate), show: percent, lowerIsBetter: true },
  { label: 'Average session', read: gauge((s) => s.averageSessionSeconds), show: duration },
  { label: 'Events per second', read: gauge((s) => s.eventsPerSecond), show: rate },
  { label: 'Product views per minute', read: perMinute('productViews'), show: count },
  { label: 'Searches per minute', read: perMinute('searches'), show: count },
  { label: 'Page views per minute', read: perMinute('pageViews'), show: count },
  { label: 'Items added to carts per minute', read: perMinute('cartItemsAdded'), show: count },
  { label: 'Items removed from carts per minute', read: perMinute('cartItemsRemoved'), show: count },
];

/** up / down / stable, with a 2 % dead band so noise does not flicker the arrows. */
function trendOf(now, before) {
  if (now == null || before == null) return 'unknown';
  const band = Math.max(Math.abs(before) * 0.02, 1e-9);
  if (now - before > band) return 'up';
  if (before - now > band) return 'down';
  return 'stable';
}

const TREND_TEXT = { up: ['▲', 'up'], down: ['▼', 'down'], stable: ['▶', 'stable'], unknown: ['…', 'collecting'] };

// Colour says good or bad only where that is clear (more orders: good; more abandonment: bad);
// a shift between activities is neither, so it stays neutral.
function trendCell(trend, { lowerIsBetter = false, neutral = false } = {}) {
  const [arrow, word] = TREND_TEXT[trend];
  const moving = trend === 'up' || trend === 'down';
  const mood = moving && !neutral ? ((trend === 'up') !== lowerIsBetter ? 'good' : 'bad') : 'neutral';
  return make('td', { class: `trend trend-${trend}`, 'data-trend': trend, 'data-mood': mood },
    make('span', { 'aria-hidden': 'true', class: 'arrow' }, arrow), ` ${word}`);
}

function renderBehavior() {
  const summary = store.summary;
  if (!summary) return;
  const distribution = summary.activityDistribution ?? [];
  pieChart($('#chart-activity-pie'), { centreLabel: 'online',
    slices: distribution.map((d) => ({ label: d.activity, value: d.shoppers, color: activityColor(d.activity) })) });
  $('#activity-legend').replaceChildren(...distribution.map((d) => make('li', {},
    make('span', { class: 'swatch', style: `background: ${activityColor(d.activity)}` }),
    make('span', {}, d.activity),
    make('span', { class: 'muted' }, `${count(d.shoppers)} · ${percent(d.share)}`))));

  const engagement = Object.entries(summary.activitySeconds ?? {})
    .filter(([, seconds]) => seconds > 0)
    .sort((a, b) => b[1] - a[1]);
  barChart($('#chart-engagement'), { formatValue: timeSpent,
    bars: engagement.map(([activity, seconds]) => ({ label: activity, value: seconds, color: activityColor(activity) })) });

  const funnel = summary.funnel ?? {};
  barChart($('#chart-funnel'), { formatValue: count,
    bars: ['browsing', 'cart', 'checkout', 'order'].map((stage, i) => ({
      label: stage[0].toUpperCase() + stage.slice(1), value: funnel[stage] ?? 0,
      color: `hsl(152 55% calc(var(--chart-lightness) + ${i * 6}%))` })) });

  renderStoreStats();
  renderActivityStats(distribution, summary.activitySeconds ?? {});
}

function renderStoreStats() {
  const baseline = store.history.length ? (Date.now() - store.history[0].at) / 1000 : 0;
  $('#stats-baseline').textContent = baseline >= 45
    ? 'Trends compare each figure with about a minute ago.'
    : `Collecting history (${count(baseline)} s so far); trends appear after about a minute.`;
  $('#store-stats-rows').replaceChildren(...STORE_STATS.map((stat) => {
    const now = stat.read(0);
    const before = stat.read(60);
    return make('tr', {},
      make('th', { scope: 'row' }, stat.label),
      make('td', { class: 'num' }, now == null ? '—' : stat.show(now)),
      make('td', { class: 'num muted secondary' }, before == null ? '—' : stat.show(before)),
      trendCell(trendOf(now, before), { lowerIsBetter: stat.lowerIsBetter }));
  }));
}

function renderActivityStats(distribution, activitySeconds) {
  const earlier = summaryAgo(60);
  const earlierShoppers = new Map((earlier?.activityDistribution ?? []).map((d) => [d.activity, d.shoppers]));
  const names = new Set([...distribution.map((d) => d.activity), ...Object.keys(activitySeconds)]);
  const byName = new Map(distribution.map((d) => [d.activity, d]));
  const rows = [...names]
    .map((name) => ({ name, shoppers: byName.get(name)?.shoppers ?? 0, share: byName.get(name)?.share ?? 0 }))
    .sort((a, b) => b.shoppers - a.shoppers || (activitySeconds[b.name] ?? 0) - (activitySeconds[a.name] ?? 0));
  $('#activity-stats-rows').replaceChildren(...rows.map((row) => make('tr', {},
    make('th', { scope: 'row' }, make('span', { class: 'badge', style: `--hue: ${activityHue(row.name)}` }, row.name)),
    make('td', { class: 'num' }, count(row.shoppers)),
    make('td', { class: 'num secondary' }, percent(row.share)),
    make('td', { class: 'num' }, timeSpent(activitySeconds[row.name] ?? 0)),
    trendCell(earlier ? trendOf(row.shoppers, earlierShoppers.get(row.name) ?? 0) : 'unknown',
      { neutral: true }))));
}

// ---------------------------------------------------------------- event stream tab

let eventFilterKey = '';

function matchesEvent(event, type, query) {
  return (!type || event.type === type)
    && (!query || `${event.userName ?? ''} ${event.userId ?? ''}`.toLowerCase().includes(query));
}

function renderEvents() {
  const type = $('#event-type-filter').value;
  const query = $('#event-search').value.trim().toLowerCase();
  const shown = store.events.filter((e) => matchesEvent(e, type, query)).slice(0, EVENTS_SHOWN);
  const list = $('#event-list');
  const filterKey = `${type}\u0000${query}`;
  const newestShown = Number(list.firstElementChild?.dataset.seq ?? Number.NaN);

  if (filterKey !== eventFilterKey || Number.isNaN(newestShown)) {
    eventFilterKey = filterKey;
    list.replaceChildren(...shown.map(eventItem));
  } else {
    // Prepend only the new ones: rebuilding would reset the reader's scroll position.
    const fresh = shown.filter((e) => e.seq > newestShown);
    list.prepend(...fresh.map(eventItem));
    while (list.children.length > EVENTS_SHOWN) list.lastElementChild.remove();
  }
  if (!shown.length) {
    list.replaceChildren(make('li', { class: 'empty' },
      store.events.length ? 'No event matches the filter' : 'Waiting for events…'));
  }
  $('#event-count').textContent = type || query
    ? `${count(shown.length)} matching of the last ${count(store.events.length)} events`
    : `Showing the last ${count(shown.length)} events, newest first`;
}

function typeBadge(type) {
  return make('span', { class: 'badge event-type', 'data-type': type }, eventLabel(type));
}

function eventItem(event) {
  const item = make('li', { class: 'event', 'data-seq': String(event.seq), 'data-id': String(event.id ?? ''),
    'data-type': event.type });
  const who = make('button', { type: 'button', class: 'link', 'data-user': event.userId },
    event.userName || event.userId);
  item.append(
    make('time', { datetime: event.time }, clock(event.time)),
    typeBadge(event.type),
    make('span', { class: 'event-text' }, who, ` ${event.message || eventLabel(event.type)}`),
    make('span', { class: 'event-meta muted' }, [event.location, event.activity].filter(Boolean).join(' · ')),
  );
  return item;
}

// ---------------------------------------------------------------- pause, demo, theme

function setPaused(paused) {
  store.paused = paused;
  store.eventsWhilePaused = 0;
  const button = $('#pause-button');
  button.textContent = paused ? 'Resume' : 'Pause';
  button.setAttribute('aria-pressed', String(paused));
  $('#paused-count').textContent = '0';
  $('#paused-note').hidden = !paused;
  // On resume everything buffered meanwhile is drawn in one go.
  if (!paused) invalidate(...Object.keys(RENDERERS));
}

function showDemo(state) {
  const button = $('#demo-button');
  button.hidden = !state?.enabled;
  button.disabled = !state?.enabled;
  if (!state?.enabled) return;
  button.dataset.running = String(Boolean(state.running));
  button.textContent = state.running ? 'Stop Demo' : 'Start Demo';
  button.title = state.running
    ? `Stop the demo traffic (${plural(state.shoppers, 'simulated shopper')})`
    : 'Start simulated shoppers';
}

async function loadDemo() {
  try {
    showDemo(await getJson('/api/demo'));
  } catch {
    showDemo(null); // no demo control on this server
  }
}

async function toggleDemo() {
  const button = $('#demo-button');
  const action = button.dataset.running === 'true' ? 'stop' : 'start';
  button.disabled = true;
  try {
    showDemo(await getJson(`/api/demo/${action}`, { method: 'POST' }));
  } catch (error) {
    if (error.status === 403) showDemo(null);
    else {
      button.disabled = false;
      button.title = `Could not ${action} the demo; try again`;
    }
  }
}

const THEME_KEY = 'live-shopper-metrics-theme';
const prefersDark = matchMedia('(prefers-color-scheme: dark)');

function currentTheme() {
  return document.documentElement.dataset.theme || (prefersDark.matches ? 'dark' : 'light');
}

function showThemeButton() {
  const dark = currentTheme() === 'dark';
  const button = $('#theme-button');
  button.setAttribute('aria-pressed', String(dark));
  button.textContent = dark ? 'Light theme' : 'Dark theme';
}

function setTheme(theme) {
  document.documentElement.dataset.theme = theme;
  try {
    localStorage.setItem(THEME_KEY, theme);
  } catch {
    // private mode: the choice lasts for this visit only
  }
  showThemeButton();
}

function restoreTheme() {
  try {
    const saved = localStorage.getItem(THEME_KEY);
    if (saved === 'light' || saved === 'dark') document.documentElement.dataset.theme = saved;
  } catch {
    // no storage: follow the system
  }
  showThemeButton();
  prefersDark.addEventListener('change', showThemeButton);
}

// ---------------------------------------------------------------- tabs

const PANEL_OF = { activity: 'panel-activity', shoppers: 'panel-shoppers', behavior: 'panel-behavior',
  events: 'panel-events' };
const RENDERERS = { kpis: renderKpis, activity: renderActivity, shoppers: renderShoppers,
  behavior: renderBehavior, events: renderEvents };

function tabs() {
  return [...document.querySelectorAll('[role="tab"]')];
}

function selectTab(tab, { focus = false } = {}) {
  for (const other of tabs()) {
    const selected = other === tab;
    other.setAttribute('aria-selected', String(selected));
    other.tabIndex = selected ? 0 : -1;
    document.getElementById(other.getAttribute('aria-controls')).hidden = !selected;
  }
  if (focus) tab.focus();
  const part = tab.id.replace('tab-', '');
  history.replaceState(null, '', `#${part}`);
  invalidate(part);
}

// Arrow keys move between tabs (automatic activation), Home/End jump to the ends.
function onTabKey(event) {
  const all = tabs();
  const index = all.indexOf(event.target);
  if (index < 0) return;
  const moves = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: all.length - 1 };
  if (!(event.key in moves)) return;
  event.preventDefault();
  selectTab(all[(moves[event.key] + all.length) % all.length], { focus: true });
}

// ---------------------------------------------------------------- helpers and start-up

/** Create an element with attributes and children (strings become text, never HTML). */
function make(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

function wireUp() {
  $('#tablist').addEventListener('keydown', onTabKey);
  for (const tab of tabs()) tab.addEventListener('click', () => selectTab(tab));
  $('#pause-button').addEventListener('click', () => setPaused(!store.paused));
  $('#demo-button').addEventListener('click', toggleDemo);
  $('#theme-button').addEventListener('click', () => setTheme(currentTheme() === 'dark' ? 'light' : 'dark'));

  $('#shopper-search').addEventListener('input', () => invalidate('shoppers'));
  $('#shopper-online-only').addEventListener('change', () => invalidate('shoppers'));
  $('#shopper-rows').addEventListener('click', (event) => {
    const row = event.target.closest('tr[data-user]');
    if (row) openShopper(row.dataset.user);
  });
  $('#event-type-filter').addEventListener('change', () => invalidate('events'));
  $('#event-search').addEventListener('input', () => invalidate('events'));
  $('#event-list').addEventListener('click', (event) => {
    const who = event.target.closest('button[data-user]');
    if (who) openShopper(who.dataset.user);
  });

  const shopperDialog = $('#shopper-dialog');
  $('#shopper-dialog-close').addEventListener('click', closeShopper);
  shopperDialog.addEventListener('click', (event) => {
    if (event.target === shopperDialog) closeShopper(); // a click on the backdrop
  });
  shopperDialog.addEventListener('close', () => {
    dialog.userId = null;
    if (dialog.opener?.isConnected) dialog.opener.focus();
  });

  // Charts are drawn at their on-screen width, so redraw them when that changes.
  let resizeTimer = 0;
  addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => invalidate('activity', 'behavior'), 150);
  });
}

function start() {
  restoreTheme();
  wireUp();
  const fromHash = document.getElementById(`tab-${location.hash.slice(1)}`);
  selectTab(fromHash ?? tabs()[0]);
  loadShoppers();
  loadDemo();
  connectLive();
  // Shoppers also go offline by silence (no frame tells us), so re-read the list now and then.
  setInterval(() => {
    if (connectionState === 'live' && !store.paused) loadShoppers();
  }, RECONCILE_MS);
}

start();
