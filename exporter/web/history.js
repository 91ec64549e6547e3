// The page's time series: up to an hour of per-second samples from GET /api/history, extended by
// each live summary, so charts are full the moment the page opens and keep moving after.
// Times are the server's (ms); `serverNow()` maps the browser's clock onto it.

const KEEP_MS = 3660_000;
const GAP_MS = 5_000; // a longer silence between summaries: refetch what was missed

// Gauges as /api/summary names them; counters become per-second rates like the server's ring.
const GAUGES = ['activeShoppers', 'activeCarts', 'cartItems', 'totalCartValue', 'averageCartValue',
  'averageSessionSeconds', 'ordersLastHour', 'orderValueLastHour', 'cartAbandonmentRate'];
const RATES = { eventsPerSecond: 'eventsTotal', cartItemsAddedPerSecond: 'cartItemsAdded',
  cartItemsRemovedPerSecond: 'cartItemsRemoved', productViewsPerSecond: 'productViews',
  searchesPerSecond: 'searches', pageViewsPerSecond: 'pageViews', ordersPerSecond: 'ordersTotal' };

export const samples = {
  windowSeconds: 300,
  times: [],
  values: Object.fromEntries([...GAUGES, ...Object.keys(RATES)].map((name) => [name, []])),
  activities: {},
  previous: null, // { at, summary }: the last summary, to turn counters into rates
  offset: 0, // browser clock minus server clock, ms
  loaded: false,
};

export const serverNow = () => Date.now() - samples.offset;

/** Replace what we hold with a reply of GET /api/history (live points after it stay). */
export function takeHistory(reply) {
  const times = (reply.time ?? []).map((t) => t * 1000);
  const end = times.at(-1) ?? -Infinity;
  let from = samples.times.findIndex((t) => t > end);
  if (from < 0) from = samples.times.length;
  const later = samples.times.slice(from);
  const zeros = (n) => new Array(n).fill(0);
  for (const name of Object.keys(samples.values)) {
    const served = reply.series?.[name] ?? times.map(() => null);
    samples.values[name] = [...served, ...samples.values[name].slice(from)];
  }
  const activities = {};
  const names = new Set([...Object.keys(reply.activities ?? {}), ...Object.keys(samples.activities)]);
  for (const name of names) {
    const served = reply.activities?.[name] ?? zeros(times.length);
    const held = samples.activities[name]?.slice(from) ?? zeros(later.length);
    activities[name] = [...served, ...held];
  }
  samples.times = [...times, ...later];
  samples.activities = activities;
  samples.loaded = true;
}

/**
 * Add a live summary as a point. Returns true when the points before it are missing (the link was
 * down), so the caller fetches the history again.
 */
export function extendHistory(summary) {
  const at = Date.parse(summary.time);
  if (!Number.isFinite(at)) return false;
  samples.offset = Date.now() - at;
  const previous = samples.previous;
  samples.previous = { at, summary };
  const last = samples.times.at(-1);
  if (last != null && at <= last) return false; // already held (the history reply covered it)
  const missed = samples.loaded && last != null && at - last > GAP_MS;
  samples.times.push(at);
  for (const name of GAUGES) samples.values[name].push(summary[name] ?? null);
  const span = previous ? (at - previous.at) / 1000 : 0;
  for (const [name, key] of Object.entries(RATES)) {
    const grown = previous ? (summary[key] ?? 0) - (previous.summary[key] ?? 0) : -1;
    // No rate from the first summary, over a long silence, or across a restart: never a spike.
    samples.values[name].push(span > 0 && span <= 10 && grown >= 0 ? grown / span : null);
  }
  const online = new Map((summary.activityDistribution ?? []).map((d) => [d.activity, d.shoppers]));
  for (const name of online.keys()) {
    samples.activities[name] ??= samples.times.slice(0, -1).map(() => 0);
  }
  for (const [name, column] of Object.entries(samples.activities)) column.push(online.get(name) ?? 0);
  trim();
  return missed;
}

function trim() {
  const cutoff = (samples.times.at(-1) ?? 0) - KEEP_MS;
  let drop = 0;
  while (drop < samples.times.length && samples.times[drop] < cutoff) drop += 1;
  if (!drop) return;
  samples.times.splice(0, drop);
  for (const column of Object.values(samples.values)) column.splice(0, drop);
  for (const column of Object.values(samples.activities)) column.splice(0, drop);
}

/** [[time, value], ...] of a series (nulls kept: they are gaps). */
export function points(name, transform = (v) => v) {
  const column = samples.values[name] ?? [];
  return samples.times.map((t, i) => [t, column[i] == null ? null : transform(column[i])]);
}

/** A per-second rate averaged over the trailing `seconds` at each point, times `scale`. */
export function smoothed(name, seconds = 10, scale = 1) {
  const column = samples.values[name] ?? [];
  const { times } = samples;
  const out = [];
  let from = 0;
  let sum = 0;
  let n = 0;
  for (let i = 0; i < times.length; i += 1) {
    if (column[i] != null) {
      sum += column[i];
      n += 1;
    }
    while (times[from] <= times[i] - seconds * 1000) {
      if (column[from] != null) {
        sum -= column[from];
        n -= 1;
      }
      from += 1;
    }
    out.push([times[i], n ? (sum / n) * scale : null]);
  }
  return out;
}

function indexNear(at, tolerance) {
  const { times } = samples;
  let best = -1;
  for (let i = times.length - 1; i >= 0; i -= 1) {
    if (best < 0 || Math.abs(times[i] - at) < Math.abs(times[best] - at)) best = i;
    if (times[i] < at - tolerance) break;
  }
  return best >= 0 && Math.abs(times[best] - at) <= tolerance ? best : -1;
}

/** A gauge's value about `secondsAgo` before the newest point (null when not held). */
export function valueAgo(name, secondsAgo) {
  const newest = samples.times.at(-1);
  if (newest == null) return null;
  const i = indexNear(newest - secondsAgo * 1000, Math.max(5, secondsAgo / 4) * 1000);
  const column = name in samples.values ? samples.values[name] : samples.activities[name];
  return i < 0 || !column ? null : column[i] ?? null;
}

/** How much a counter grew in the minute ending `secondsAgo` ago (from its per-second rate). */
export function perMinuteAgo(name, secondsAgo) {
  const newest = samples.times.at(-1);
  const oldest = samples.times[0];
  if (newest == null) return null;
  const end = newest - secondsAgo * 1000;
  const start = end - 60_000;
  if (oldest > start + 5_000) return null; // not a minute of history yet
  const column = samples.values[name];
  let total = 0;
  let covered = 0;
  for (let i = 1; i < samples.times.length; i += 1) {
    const t = samples.times[i];
    if (t <= start || t > end) continue;
    const span = Math.min(t - samples.times[i - 1], 10_000) / 1000;
    if (column[i] != null) {
      total += column[i] * span;
      covered += span;
    }
  }
  return covered >= 30 ? Math.round((total * 60) / covered) : null;
}
