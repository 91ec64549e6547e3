// Live Shopper Metrics — the store's live page.
// At start: GET /api/summary and /api/history (the last minutes, so charts are full at once).
// Live data comes through the browser client (/client/metrics-service.js), the same one shops
// use: the summary each second, shoppers as they change, events once each across reconnects.
// The shopper table reads one page of /api/shoppers at a time while it is shown.

import { DURATION_STEPS, barChart, pieChart, timeSeriesChart } from './charts.js';
import { MetricsService } from '../client/metrics-service.js';
import { activityColor, activityLabel, activityStyle } from './colors.js';
import {
  $, clock, count, duration, getJson, make, money, percent, plural, rate, timeSpent,
} from './format.js';
import {
  extendHistory, perMinuteAgo, points, serverNow, samples, smoothed, takeHistory, valueAgo,
} from './history.js';
import {
  REFRESH_MS, liveSessionSeconds, loadShopperPage, renderShopperTable, restart, table, turnPage,
} from './shoppers.js';

const EVENTS_KEPT = 500; // more than shown, so type and shopper filters still find rare events
const EVENTS_SHOWN = 50;
const RECONCILE_MS = 60_000;
const WINDOWS = { '5m': 300, '15m': 900, '1h': 3600 };

const EVENT_LABELS = {
  session_started: 'Session started', session_ended: 'Session ended', product_viewed: 'Product viewed',
  search: 'Search', cart_add: 'Cart add', cart_remove: 'Cart remove', checkout_started: 'Checkout',
  order_completed: 'Order', delivery_scheduled: 'Delivery', coupon_applied: 'Coupon',
  cart_abandoned: 'Abandoned', alert: 'Alert',
};
const eventLabel = (type) => EVENT_LABELS[type] ?? type.replaceAll('_', ' ');

// ---------------------------------------------------------------- state

const store = {
  summary: null,
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

// A sharded replica shows only its own shoppers: say so, and where the whole store is seen.
function showShard(shard) {
  const badge = $('#shard-badge');
  badge.hidden = !shard;
  if (!shard) return;
  badge.textContent = `shard ${shard.index}/${shard.count}`;
  badge.title = `This replica holds only the shoppers of shard ${shard.index} (of ${shard.count}, `
    + 'numbered from 0); Grafana shows the whole store';
}

function applySummary(summary) {
  store.summary = summary;
  showShard(summary.shard);
  // A gap since the last point means the link was down: fetch what the server saw meanwhile.
  if (extendHistory(summary)) loadHistory();
  // Shopper session clocks tick with the summary, so the table is redrawn too.
  invalidate('kpis', 'activity', 'behavior', 'shoppers');
}

function applyShopper(view) {
  if (!view?.userId) return;
  // Only the page shown is held; the next refresh brings in anyone who now belongs on it.
  if (table.rows.has(view.userId)) {
    table.rows.set(view.userId, { view, receivedAt: Date.now() });
    invalidate('shoppers');
  }
  if (dialog.userId === view.userId) renderShopperFacts(view, Date.now());
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

async function loadSummary() {
  // Both at once: the charts are drawn full as soon as the history arrives.
  await Promise.all([
    getJson('/api/summary').then(applySummary).catch(() => {}), // the stream brings one within a second
    loadHistory(),
  ]);
}

async function loadHistory() {
  const seconds = samples.windowSeconds;
  try {
    const reply = await getJson(`/api/history?window=${seconds}`);
    if (seconds !== samples.windowSeconds) return; // the window changed meanwhile
    takeHistory(reply);
    invalidate('activity', 'behavior', 'kpis');
    requestAnimationFrame(() => {
      // When the charts were first drawn from the history, and with how many points each: tests
      // and the benchmark read these.
      const root = document.documentElement;
      if (root.dataset.chartsAt) return;
      root.dataset.chartsAt = String(Math.round(performance.now()));
      const drawn = [...document.querySelectorAll('#panel-activity svg.chart')]
        .map((svg) => [svg.id, Number(svg.dataset.points ?? 0)]);
      root.dataset.chartsPoints = JSON.stringify(Object.fromEntries(drawn));
    });
  } catch {
    // the live summaries still draw the charts from now on
  }
}

// The table is read when its tab is open (and then every few seconds): at first paint only the
// charts' data is asked for.
function loadShoppers() {
  if ($('#panel-shoppers').hidden) {
    table.loaded = false;
    return Promise.resolve();
  }
  return loadShopperPage(() => invalidate('shoppers'), { background: table.loaded });
}

// ---------------------------------------------------------------- history lookups

const gauge = (name) => (ago) => valueAgo(name, ago);
const perMinute = (name) => (ago) => perMinuteAgo(name, ago);

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
    note: () => lastMinuteNote('productViewsPerSecond', 'in the last minute', 'total since start') },
  searchActivity: { value: (s) => s.searches, show: count,
    note: () => lastMinuteNote('searchesPerSecond', 'searches in the last minute', 'searches since start') },
};

function lastMinuteNote(key, suffix, fallback) {
  const grown = perMinuteAgo(key, 0);
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

const eventsPerSecond = (n) => `${rate(n)} events/s`;
const itemsPerMinute = (n) => `${rate(n)} items/min`;

function renderActivity() {
  const now = serverNow();
  const windowSeconds = samples.windowSeconds;
  timeSeriesChart($('#chart-active-shoppers'), { now, windowSeconds, formatValue: count, unit: 'shoppers',
    describe: (n) => plural(Math.round(n), 'shopper'),
    series: [{ points: points('activeShoppers'), className: 'series-shoppers', area: true }] });
  // Per-second counts are spiky at a real store's pace: each point averages the last 10 s.
  timeSeriesChart($('#chart-events-per-second'), { now, windowSeconds, formatValue: rate, unit: 'events/s',
    describe: eventsPerSecond,
    series: [{ points: smoothed('eventsPerSecond'), className: 'series-events' }] });
  timeSeriesChart($('#chart-session-duration'), { now, windowSeconds, formatValue: duration,
    steps: DURATION_STEPS, unit: 'm:ss', describe: (s) => `${duration(s)} (m:ss)`,
    series: [{ points: points('averageSessionSeconds'), className: 'series-session', area: true }] });
  timeSeriesChart($('#chart-cart-actions'), { now, windowSeconds, formatValue: count, unit: 'items/min',
    describe: itemsPerMinute,
    series: [
      { name: 'added', points: smoothed('cartItemsAddedPerSecond', 10, 60), className: 'series-added' },
      { name: 'removed', points: smoothed('cartItemsRemovedPerSecond', 10, 60), className: 'series-removed' },
    ] });

  const summary = store.summary;
  if (!summary) return;
  const latestEvents = smoothed('eventsPerSecond').findLast(([, v]) => v != null)?.[1];
  showLatest('active-shoppers', 'activeShoppers', plural(summary.activeShoppers, 'shopper'));
  showLatest('events-per-second', 'eventsPerSecond', eventsPerSecond(latestEvents ?? summary.eventsPerSecond));
  showLatest('session-duration', 'averageSessionSeconds', `${duration(summary.averageSessionSeconds)} (m:ss)`);
  const added = smoothed('cartItemsAddedPerSecond', 10, 60).findLast(([, v]) => v != null)?.[1];
  const removed = smoothed('cartItemsRemovedPerSecond', 10, 60).findLast(([, v]) => v != null)?.[1];
  $('[data-latest="cartItemsAdded"]').textContent = itemsPerMinute(added ?? 0);
  $('[data-latest="cartItemsRemoved"]').textContent = itemsPerMinute(removed ?? 0);
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
    const card = make('li', { class: 'activity-card', style: activityStyle(item.activity) });
    card.append(
      make('span', { class: 'rank' }, `#${i + 1}`),
      make('span', { class: 'activity-name' }, activityLabel(item.activity)),
      make('span', { class: 'activity-count' }, plural(item.shoppers, 'shopper')),
      make('span', { class: 'share-bar', 'aria-hidden': 'true' },
        make('span', { style: `width: ${(item.share * 100).toFixed(1)}%` })),
      make('span', { class: 'muted' }, `${percent(item.share)} of online shoppers`),
    );
    return card;
  }));
}

function selectWindow(button) {
  const seconds = WINDOWS[button.dataset.window];
  if (!seconds || seconds === samples.windowSeconds) return;
  for (const other of document.querySelectorAll('[data-window]')) {
    other.setAttribute('aria-pressed', String(other === button));
  }
  samples.windowSeconds = seconds;
  const words = { 300: '5 minutes', 900: '15 minutes', 3600: 'hour' }[seconds];
  for (const svg of document.querySelectorAll('#panel-activity svg.chart')) {
    svg.dataset.label = (svg.dataset.label ?? svg.getAttribute('aria-label'))
      .replace(/over the last [\w ]+$/, `over the last ${words}`);
  }
  loadHistory();
}

// ---------------------------------------------------------------- shopper details tab

function renderShoppers() {
  const stale = !table.loaded || Date.now() - table.loadedAt > REFRESH_MS;
  if (stale && !table.inFlight) loadShoppers();
  renderShopperTable(store.summary);
}

// ---------------------------------------------------------------- shopper dialog

const dialog = { userId: null, opener: null };

async function openShopper(userId) {
  const element = $('#shopper-dialog');
  dialog.userId = userId;
  dialog.opener = document.activeElement;
  const entry = table.rows.get(userId);
  $('#shopper-dialog-title').textContent = entry?.view.userName ?? userId;
  if (entry) renderShopperFacts(entry.view, entry.receivedAt);
  else $('#shopper-facts').replaceChildren();
  const timeline = $('#shopper-timeline');
  timeline.replaceChildren(make('li', { class: 'empty' }, 'Loading…'));
  if (!element.open) element.showModal();
  const id = encodeURIComponent(userId);
  // Any shopper opens, not only those on the page shown: their state comes from the server.
  const [view, events] = await Promise.allSettled([
    getJson(`/api/shoppers/${id}`), getJson(`/api/shoppers/${id}/events?limit=50`)]);
  if (dialog.userId !== userId) return;
  if (view.status === 'fulfilled') {
    $('#shopper-dialog-title').textContent = view.value.userName || userId;
    renderShopperFacts(view.value, Date.now());
  }
  if (events.status === 'fulfilled') {
    const found = events.value.events ?? [];
    timeline.replaceChildren(...found.map(timelineItem));
    if (!found.length) timeline.append(make('li', { class: 'empty' }, 'No events for this shopper yet'));
  } else {
    timeline.replaceChildren(make('li', { class: 'empty' },
      events.reason?.status === 404 ? 'This shopper is no longer tracked' : 'Could not load the timeline'));
  }
}

function renderShopperFacts(view, receivedAt) {
  const facts = [
    ['Status', view.online ? 'Online' : 'Offline'],
    ['Shopper id', view.userId],
    ['Location', view.location || '—'],
    ['Membership', view.membershipType || '—'],
    ['Delivery window', view.deliveryWindow || '—'],
    ['Current activity', view.activeFeature ? activityLabel(view.activeFeature) : '—'],
    ['Session', `${duration(liveSessionSeconds({ view, receivedAt }))} (m:ss)`],
    ['Cart', `${money(view.cartValue)} · ${plural(view.itemsInCart ?? 0, 'item')}`],
    ['Products viewed', count(view.productsViewed)],
    ['Searches', count(view.searchesPerformed)],
    ['Page views', count(view.pageViews)],
    ['Coupons applied', count(view.couponsApplied)],
    ['Last action', view.lastAction ? `${view.lastAction} (${clock(view.lastActionTime)})` : '—'],
    ['Activities used', (view.featuresUsed ?? []).map(activityLabel).join(', ') || '—'],
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
  { label: 'Active shoppers', read: gauge('activeShoppers'), show: count },
  { label: 'Active carts', read: gauge('activeCarts'), show: count },
  { label: 'Items in carts', read: gauge('cartItems'), show: count },
  { label: 'Total cart value', read: gauge('totalCartValue'), show: money },
  { label: 'Average cart value', read: gauge('averageCartValue'), show: money },
  { label: 'Orders in the last hour', read: gauge('ordersLastHour'), show: count },
  { label: 'Order value in the last hour', read: gauge('orderValueLastHour'), show: money },
  { label: 'Cart abandonment rate', read: gauge('cartAbandonmentRate'), show: percent, lowerIsBetter: true },
  { label: 'Average session (m:ss)', read: gauge('averageSessionSeconds'), show: duration },
  { label: 'Events per second', read: perMinute('eventsPerSecond'), show: (n) => rate(n / 60) },
  { label: 'Product views per minute', read: perMinute('productViewsPerSecond'), show: count },
  { label: 'Searches per minute', read: perMinute('searchesPerSecond'), show: count },
  { label: 'Page views per minute', read: perMinute('pageViewsPerSecond'), show: count },
  { label: 'Items added to carts per minute', read: perMinute('cartItemsAddedPerSecond'), show: count },
  { label: 'Items removed from carts per minute', read: perMinute('cartItemsRemovedPerSecond'), show: count },
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
  pieChart($('#chart-activity-pie'), { centreLabel: 'online shoppers',
    describe: (n, share) => `${plural(n, 'shopper')} (${percent(share)})`,
    slices: distribution.map((d) => ({ label: activityLabel(d.activity), value: d.shoppers,
      color: activityColor(d.activity) })) });
  $('#activity-legend').replaceChildren(...distribution.map((d) => make('li', { 'data-activity': d.activity },
    make('span', { class: 'swatch', style: `background: ${activityColor(d.activity)}` }),
    make('span', {}, activityLabel(d.activity)),
    make('span', { class: 'legend-value' }, `${plural(d.shoppers, 'shopper')} · ${percent(d.share)}`))));

  const engagement = Object.entries(summary.activitySeconds ?? {})
    .filter(([, seconds]) => seconds > 0)
    .sort((a, b) => b[1] - a[1]);
  barChart($('#chart-engagement'), { formatValue: timeSpent,
    describe: (seconds) => `${timeSpent(seconds)} spent in all`,
    bars: engagement.map(([activity, seconds]) => ({ label: activityLabel(activity), value: seconds,
      color: activityColor(activity) })) });

  const funnel = summary.funnel ?? {};
  barChart($('#chart-funnel'), { formatValue: count, describe: (n) => plural(n, 'session'),
    bars: ['browsing', 'cart', 'checkout', 'order'].map((stage, i) => ({
      label: stage[0].toUpperCase() + stage.slice(1), value: funnel[stage] ?? 0,
      color: `hsl(152 55% calc(var(--chart-lightness) + ${i * 6}%))` })) });

  renderStoreStats();
  renderActivityStats(distribution, summary.activitySeconds ?? {});
}

function renderStoreStats() {
  const held = samples.times.length ? (samples.times.at(-1) - samples.times[0]) / 1000 : 0;
  $('#stats-baseline').textContent = held >= 115
    ? 'Trends compare each figure with about a minute ago.'
    : `The service has ${count(held)} s of history so far; trends appear after about two minutes.`;
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
  const earlier = valueAgo('activeShoppers', 60) != null;
  const names = new Set([...distribution.map((d) => d.activity), ...Object.keys(activitySeconds)]);
  const byName = new Map(distribution.map((d) => [d.activity, d]));
  const rows = [...names]
    .map((name) => ({ name, shoppers: byName.get(name)?.shoppers ?? 0, share: byName.get(name)?.share ?? 0 }))
    .sort((a, b) => b.shoppers - a.shoppers || (activitySeconds[b.name] ?? 0) - (activitySeconds[a.name] ?? 0));
  $('#activity-stats-rows').replaceChildren(...rows.map((row) => make('tr', {},
    make('th', { scope: 'row' }, make('span', { class: 'badge', style: activityStyle(row.name) }, activityLabel(row.name))),
    make('td', { class: 'num' }, count(row.shoppers)),
    make('td', { class: 'num secondary' }, percent(row.share)),
    make('td', { class: 'num' }, timeSpent(activitySeconds[row.name] ?? 0)),
    trendCell(earlier ? trendOf(row.shoppers, valueAgo(row.name, 60) ?? 0) : 'unknown',
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
  // Simulated traffic faster than real time says so: "demo ×10".
  const speed = state?.running ? state.speed : state?.external?.speed;
  const badge = $('#demo-badge');
  badge.hidden = !(speed > 1);
  badge.textContent = `demo ×${Number(speed ?? 1).toLocaleString('en-US', { maximumFractionDigits: 1 })}`;
  badge.title = speed > 1
    ? `Simulated shoppers, ${speed} times faster than a real store` : '';
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

function wireUp() {
  $('#tablist').addEventListener('keydown', onTabKey);
  for (const tab of tabs()) tab.addEventListener('click', () => selectTab(tab));
  $('#pause-button').addEventListener('click', () => setPaused(!store.paused));
  $('#demo-button').addEventListener('click', toggleDemo);
  $('#theme-button').addEventListener('click', () => setTheme(currentTheme() === 'dark' ? 'light' : 'dark'));

  const redraw = () => invalidate('shoppers');
  $('#shopper-search').addEventListener('input', () => restart(redraw));
  for (const id of ['#shopper-online-only', '#shopper-activity', '#shopper-sort']) {
    $(id).addEventListener('change', () => restart(redraw));
  }
  $('#shopper-prev').addEventListener('click', () => turnPage(-1, redraw));
  $('#shopper-next').addEventListener('click', () => turnPage(1, redraw));
  for (const button of document.querySelectorAll('[data-window]')) {
    button.addEventListener('click', () => selectWindow(button));
  }
  // The page shown is read again every few seconds while it is on screen.
  setInterval(() => {
    if (!store.paused && !$('#panel-shoppers').hidden) loadShoppers();
  }, REFRESH_MS);
  // A demo started elsewhere (docker-compose) announces itself; look now and then.
  setInterval(loadDemo, 30_000);
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
  loadSummary();
  loadShoppers();
  loadDemo();
  connectLive();
  // Shoppers also go offline by silence (no frame tells us), so re-read the list now and then.
  setInterval(() => {
    if (connectionState === 'live' && !store.paused) loadShoppers();
  }, RECONCILE_MS);
}

start();
