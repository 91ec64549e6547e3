// Live Shopper Metrics browser client: the brief's `metricsService`, backed by the exporter.
//
// One dependency-free ES module (no build step, works offline). The exporter serves it at
// /client/metrics-service.js; `metricsService` is ready to use against the exporter it was
// loaded from. Types: metrics-service.d.ts beside it.
//
// Pushes are queued and sent together (one body per `batchMs`), retried with jittered backoff
// when the exporter cannot be reached, and flushed when the page is hidden or closed. Every
// push leaves through `#deliver`, the one send path.

const DEFAULTS = Object.freeze({
  baseUrl: '',
  token: '',
  batchMs: 250,
  maxBatch: 1000,
  maxBodyBytes: 512 * 1024, // half the exporter's default limit (--max-body-bytes, 1 MiB)
  maxQueue: 10_000,
  retryBaseMs: 500,
  retryMaxMs: 15_000,
  reconnectMs: 5000, // the brief's "auto-reconnect after 5 seconds"
  staleMs: 10_000, // the exporter sends a summary every second; this much silence is a dead link
  shards: 0, // N replicas behind one proxy URL: each body holds one shard's records, named in SHARD_HEADER
  onError: null,
});

// Browsers let a closing page keep at most 64 KiB of bodies in flight; stay under it.
const KEEPALIVE_BYTES = 60 * 1024;
// Bodies this small always go with keepalive, so they outlive the page without being sent
// twice. Larger ones go without (keepalive requests took longer here: bench/RESULTS.md) and are
// sent again, with keepalive, when the page closes before their reply.
const ALWAYS_KEEPALIVE_BYTES = 8 * 1024;
// Bodies are arrays or {"metrics":[...],"events":[...]}: this much beside the records' JSON.
const BODY_OVERHEAD = 32;
const SHARD_HEADER = 'X-Shopper-Shard';
const RETRY_STATUSES = new Set([0, 408, 425, 429, 500, 502, 503, 504]);
const REMEMBERED_SOURCE_RECORDS = 10_000;
const WS_TOO_BIG = 1009;
const STATUS_OF_WS_ERROR = { not_json: 400, invalid: 422, batch_too_large: 413, too_large: 413 };

/** The base URL a client loaded from the exporter serves: the folder above /client/. */
function defaultBaseUrl() {
  try {
    const here = new URL(import.meta.url);
    if (/^https?:$/.test(here.protocol) && here.pathname.endsWith('/client/metrics-service.js')) {
      return new URL('../', here).href;
    }
  } catch {
    // bundled without import.meta.url: fall through to the page's own origin
  }
  return typeof location !== 'undefined' && /^https?:$/.test(location.protocol)
    ? `${location.origin}/`
    : 'http://localhost:9462/';
}

function withSlash(url) {
  return url.endsWith('/') ? url : `${url}/`;
}

const encoder = new TextEncoder();

function utf8Length(text) {
  // ASCII (most records) is one byte a character; only other text needs encoding to count.
  // eslint-disable-next-line no-control-regex
  return /^[\x00-\x7f]*$/.test(text) ? text.length : encoder.encode(text).length;
}

const FNV_OFFSET_BASIS = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;
const JUMP_MULTIPLIER = 2862933555777941757n;
const MAX_SHARDS = 2 ** 31 - 1; // the jump hash is defined for a 32-bit signed bucket count

/**
 * The shard (0 to count - 1) that owns `userId`: Lamping and Veach's jump consistent hash of the
 * 64-bit FNV-1a hash of its UTF-8 bytes. The exporter's `exporter.sharding.shard_of` is the same
 * function, checked against the same test vectors.
 */
export function shardOf(userId, count) {
  if (typeof userId !== 'string') {
    throw new TypeError(`userId must be a string, got ${typeof userId}`);
  }
  if (!Number.isInteger(count) || count < 1 || count > MAX_SHARDS) {
    throw new RangeError(`shard count must be an integer between 1 and ${MAX_SHARDS}, got ${count}`);
  }
  let key = FNV_OFFSET_BASIS;
  for (const byte of encoder.encode(userId)) {
    key = BigInt.asUintN(64, (key ^ BigInt(byte)) * FNV_PRIME);
  }
  let bucket = -1;
  let jump = 0;
  while (jump < count) {
    bucket = jump;
    key = BigInt.asUintN(64, key * JUMP_MULTIPLIER + 1n);
    // In doubles, as the paper's C does (exact: key >> 33 has 31 bits), so both ends agree.
    jump = Math.floor((bucket + 1) * (2 ** 31 / (Number(key >> 33n) + 1)));
  }
  return bucket;
}

function safely(callback, ...args) {
  try {
    callback(...args);
  } catch (error) {
    // A listener's mistake must not stop the others or the client.
    setTimeout(() => {
      throw error;
    });
  }
}

/**
 * The records of any body the exporter accepts: `{type: 'user_metric', metric}`,
 * `{type: 'event', event}`, `{metrics, events}`, an array of any of these, or a bare record
 * (an object with `userId`; it is an event when it has a `type`).
 */
export function recordsOf(body) {
  const found = { metrics: [], events: [] };
  const visit = (item) => {
    if (Array.isArray(item)) {
      item.forEach(visit);
    } else if (item && typeof item === 'object') {
      if (Array.isArray(item.metrics) || Array.isArray(item.events)) {
        found.metrics.push(...(item.metrics ?? []));
        found.events.push(...(item.events ?? []));
      } else if (item.type === 'user_metric' && item.metric) {
        found.metrics.push(item.metric);
      } else if (item.type === 'event' && item.event) {
        found.events.push(item.event);
      } else if (typeof item.userId === 'string') {
        (typeof item.type === 'string' ? found.events : found.metrics).push(item);
      }
    }
  };
  visit(body);
  return found;
}

/** The exporter's summary with the brief's names beside its own (activeUsers, ...). */
export function withBriefNames(summary) {
  const top = summary.topActivities ?? [];
  return {
    ...summary,
    activeUsers: summary.activeShoppers ?? 0,
    totalUsers: summary.trackedShoppers ?? 0,
    avgSessionDuration: (summary.averageSessionSeconds ?? 0) / 60,
    totalEvents: summary.eventsTotal ?? 0,
    eventsPerMinute: (summary.eventsPerSecond ?? 0) * 60,
    topFeatures: top.map((a) => ({ feature: a.activity, count: a.shoppers })),
    cartValue: summary.totalCartValue ?? 0,
    ordersPerHour: summary.ordersLastHour ?? 0,
    cartAbandonment: summary.cartAbandonmentRate ?? 0,
    searchActivity: summary.searches ?? 0,
  };
}

/** Remembers the records a source already forwarded, so a replay is not counted twice. */
class SeenRecords {
  #latest = new Map(); // userId → JSON of the last update forwarded
  #events = new Set(); // JSON of recent events forwarded

  fresh(kind, json, record) {
    if (kind === 'metric') {
      if (this.#latest.get(record.userId) === json) return false;
      this.#latest.delete(record.userId);
      this.#latest.set(record.userId, json);
      this.#trim(this.#latest);
      return true;
    }
    if (this.#events.has(json)) return false;
    this.#events.add(json);
    this.#trim(this.#events);
    return true;
  }

  #trim(collection) {
    // Maps and sets iterate oldest first: drop the oldest past the bound.
    while (collection.size > REMEMBERED_SOURCE_RECORDS) {
      collection.delete(collection.keys().next().value);
    }
  }
}

/** A push connection to the exporter's /ws: one message per batch, one ack per message. */
class PushSocket {
  #socket;
  #waiting = []; // resolvers of the messages sent, in order: acks come back in the same order
  #onClose;

  constructor(url, onOpen, onClose) {
    this.#onClose = onClose;
    this.#socket = new WebSocket(url);
    this.#socket.addEventListener('open', onOpen);
    this.#socket.addEventListener('message', (message) => this.#onMessage(message));
    this.#socket.addEventListener('close', (event) => this.#closed(event.code));
  }

  get open() {
    return this.#socket.readyState === WebSocket.OPEN;
  }

  send(body) {
    return new Promise((resolve) => {
      this.#waiting.push(resolve);
      this.#socket.send(body);
    });
  }

  close() {
    this.#socket.close(1000, 'client disconnect');
  }

  #onMessage(message) {
    let reply;
    try {
      reply = JSON.parse(message.data);
    } catch {
      return;
    }
    if (reply.type !== 'ack' && reply.type !== 'error') return;
    const resolve = this.#waiting.shift();
    if (!resolve) return;
    const status = reply.type === 'ack'
      ? (reply.accepted === 0 && reply.ignored === 0 && reply.rejected?.length ? 422 : 200)
      : STATUS_OF_WS_ERROR[reply.error] ?? 400;
    resolve({ status, reply });
  }

  #closed(code) {
    // Messages without an ack are unknown: they go back to the queue (at least once).
    const status = code === WS_TOO_BIG ? 413 : 0;
    const reply = code === WS_TOO_BIG ? { error: 'too_large', message: 'message too big' } : null;
    for (const resolve of this.#waiting.splice(0)) resolve({ status, reply });
    this.#onClose();
  }
}

export class MetricsService {
  #options;
  #queue = []; // {kind: 'metric' | 'event', json, bytes, at: when queued, shard}, oldest first
  #sending = false;
  #inFlight = null; // {batch, survivesUnload, resent} of the body on its way
  #batchTimer = 0;
  #retryTimer = 0;
  #attempt = 0;
  #recordCap; // records per body; halved when the exporter says a body had too many
  #byteCap; // bytes per body; halved when the exporter says a body was too large
  #unreachableReported = false;
  #dropReported = false;
  #pageWatched = false;
  #stats = { sent: 0, requests: 0, accepted: 0, ignored: 0, rejected: 0, dropped: 0, retries: 0 };

  #pushSocket = null;
  #pushSocketWanted = false;
  #pushSocketTimer = 0;
  #sources = new Map(); // url → {close()}
  #poller = null;
  #seen = new SeenRecords();
  #downSources = new Set(); // sources whose outage was reported (once per outage)

  #listeners = {
    summary: new Set(),
    event: new Set(),
    shopper: new Set(),
    error: new Set(),
    connection: new Set(),
  };
  #live = null; // the exporter's /api/stream while someone listens
  #liveUpdateQueued = false;
  #lastSummary = null;
  #connection = 'disconnected';

  /** @param {Partial<typeof DEFAULTS>} options */
  constructor(options = {}) {
    this.#options = { ...DEFAULTS, baseUrl: defaultBaseUrl() };
    this.configure(options);
  }

  /** Change options (baseUrl, token, batchMs, ...) of a running client. */
  configure(options = {}) {
    const known = Object.fromEntries(Object.entries(options).filter(([key]) => key in DEFAULTS));
    Object.assign(this.#options, known);
    this.#options.baseUrl = withSlash(String(this.#options.baseUrl || defaultBaseUrl()));
    const { shards } = this.#options;
    if (shards !== 0 && !(Number.isInteger(shards) && shards >= 1 && shards <= MAX_SHARDS)) {
      throw new RangeError(`shards must be 0 (one exporter) or an integer from 1 to ${MAX_SHARDS}, got ${shards}`);
    }
    this.#recordCap = this.#options.maxBatch;
    this.#byteCap = this.#options.maxBodyBytes;
    if (this.#live && ('baseUrl' in known || 'token' in known)) this.#openLive();
    return this;
  }

  get options() {
    return { ...this.#options };
  }

  /** Counters of what the client did: queued, sent, accepted, dropped, retries, ... */
  get stats() {
    return { ...this.#stats, queued: this.#queue.length };
  }

  // ------------------------------------------------------------ pushing

  /** Queue one shopper update; it goes with the others of the next `batchMs`. */
  pushUserMetric(metric) {
    this.#enqueue('metric', [metric]);
  }

  /** Queue shopper updates (split into bodies within the exporter's limits). */
  pushBulkMetrics(metrics) {
    this.#enqueue('metric', Array.isArray(metrics) ? metrics : [metrics]);
  }

  /** Queue explicit shopping events (`cart_add`, `order_completed`, ...). */
  pushEvents(events) {
    this.#enqueue('event', Array.isArray(events) ? events : [events]);
  }

  /** Send everything queued now; resolves when the queue is empty or waits for a retry. */
  async flush() {
    clearTimeout(this.#batchTimer);
    this.#batchTimer = 0;
    while (this.#queue.length && !this.#retryTimer) {
      if (this.#sending) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      } else {
        await this.#sendNext();
      }
    }
  }

  #enqueue(kind, records, seen = null) {
    for (const record of records) {
      if (!record || typeof record !== 'object' || Array.isArray(record)) {
        this.#report({ reason: 'invalid', message: `a ${kind} must be an object`, records: 1 });
        continue;
      }
      let json;
      try {
        json = JSON.stringify(record);
      } catch (error) {
        this.#report({ reason: 'invalid', message: `a ${kind} cannot be sent: ${error}`, records: 1 });
        continue;
      }
      if (seen && !seen.fresh(kind, json, record)) continue;
      const bytes = utf8Length(json);
      if (bytes + BODY_OVERHEAD > this.#options.maxBodyBytes) {
        this.#report({ reason: 'too_large', status: 413, records: 1,
          message: `a ${kind} of ${bytes} bytes is over maxBodyBytes (${this.#options.maxBodyBytes})` });
        continue;
      }
      this.#queue.push({ kind, json, bytes, at: Date.now(), shard: this.#shardOfRecord(record) });
    }
    const over = this.#queue.length - this.#options.maxQueue;
    if (over > 0) this.#drop(this.#queue.splice(0, over), 'queue_full');
    this.#watchPage();
    this.#schedule();
  }

  /** The shard of a record when sharding (0 without, or for a record with no string userId). */
  #shardOfRecord(record) {
    const { shards } = this.#options;
    return shards && typeof record.userId === 'string' ? shardOf(record.userId, shards) : 0;
  }

  #drop(items, reason) {
    this.#stats.dropped += items.length;
    if (this.#dropReported) return; // once per outage; stats.dropped keeps counting
    this.#dropReported = true;
    this.#report({ reason, records: items.length,
      message: reason === 'queue_full'
        ? `the queue is full (maxQueue ${this.#options.maxQueue}): dropping the oldest (stats.dropped counts them)`
        : `dropped ${items.length} record(s)` });
  }

  // A body goes when the oldest queued record has waited `batchMs` (it may have waited while
  // the previous body was on its way), never before the current task ends (so calls made
  // together go together, even with batchMs 0), and at once when a full body is queued.
  #schedule() {
    if (this.#sending || this.#retryTimer || !this.#queue.length) return;
    if (this.#queue.length >= this.#recordCap) {
      clearTimeout(this.#batchTimer);
      this.#batchTimer = 0;
      this.#sendNext();
    } else if (!this.#batchTimer) {
      const wait = this.#queue[0].at + this.#options.batchMs - Date.now();
      this.#batchTimer = setTimeout(() => {
        this.#batchTimer = 0;
        this.#sendNext();
      }, Math.max(0, wait));
    }
  }

  /** The oldest queued records that fit one body; sharding, the oldest of one shard (that of
   * the oldest record), the others staying queued in their order. */
  #takeBatch(maxBytes) {
    const shard = this.#queue[0]?.shard;
    let bytes = BODY_OVERHEAD;
    let full = false;
    const taken = [];
    const left = [];
    for (const item of this.#queue) {
      if (!full && item.shard === shard) {
        full = taken.length === this.#recordCap || (taken.length > 0 && bytes + item.bytes + 1 > maxBytes);
      }
      if (full || item.shard !== shard) {
        left.push(item);
      } else {
        bytes += item.bytes + 1;
        taken.push(item);
      }
    }
    this.#queue = left;
    return taken;
  }

  async #sendNext() {
    if (this.#sending || !this.#queue.length) return;
    this.#sending = true;
    const batch = this.#takeBatch(this.#byteCap);
    const flight = { batch, survivesUnload: false, resent: false };
    this.#inFlight = flight;
    let result;
    try {
      result = await this.#deliver(batch, { flight });
    } catch (error) {
      result = { status: 0, reply: null, error };
    }
    this.#sending = false;
    this.#inFlight = null;
    // A copy left when the page was closing; that copy's reply settles the batch.
    if (!flight.resent) this.#settle(batch, result);
    this.#schedule();
  }

  /**
   * The one send path: a batch as one body, over the exporter's /ws when connectWebSocket()
   * opened it, else POSTed. `unloading` sends from a closing page (keepalive, never the socket).
   */
  async #deliver(batch, { unloading = false, flight = null } = {}) {
    const metrics = batch.filter((item) => item.kind === 'metric').map((item) => item.json);
    const events = batch.filter((item) => item.kind === 'event').map((item) => item.json);
    const envelope = `{"metrics":[${metrics.join(',')}],"events":[${events.join(',')}]}`;
    this.#stats.requests += 1;
    // A socket reaches one replica: sharded bodies go over HTTP, each naming its shard.
    const sharded = this.#options.shards > 0;
    if (!unloading && !sharded && this.#pushSocket?.open) return this.#pushSocket.send(envelope);

    let path = 'api/metrics';
    let body = envelope;
    if (!events.length) body = `[${metrics.join(',')}]`;
    else if (!metrics.length) [path, body] = ['api/events', `[${events.join(',')}]`];
    const headers = { 'Content-Type': 'application/json' };
    if (this.#options.token) headers.Authorization = `Bearer ${this.#options.token}`;
    if (sharded) headers[SHARD_HEADER] = String(batch[0]?.shard ?? 0);
    // keepalive lets the request finish after the page closed (browsers cap such bodies).
    const keepalive = unloading || bytesOf(batch) <= ALWAYS_KEEPALIVE_BYTES;
    if (flight) flight.survivesUnload = keepalive;
    const response = await fetch(new URL(path, this.#options.baseUrl), {
      method: 'POST',
      headers,
      body,
      keepalive,
    });
    let reply = null;
    try {
      reply = await response.json();
    } catch {
      // an empty or non-JSON reply (a proxy's error page): the status says enough
    }
    return { status: response.status, reply, retryAfter: response.headers.get('Retry-After') };
  }

  /** What a reply means for its batch: done, partly refused, retry, split, or refused whole. */
  #settle(batch, { status, reply, retryAfter }) {
    if (status === 200 || (status === 422 && Array.isArray(reply?.rejected))) {
      this.#attempt = 0;
      this.#unreachableReported = false;
      this.#dropReported = false;
      this.#stats.sent += batch.length;
      this.#stats.accepted += reply?.accepted ?? 0;
      this.#stats.ignored += reply?.ignored ?? 0;
      const rejected = reply?.rejected ?? [];
      if (rejected.length) {
        this.#stats.rejected += rejected.length;
        this.#report({ reason: 'rejected', status, records: rejected.length, rejected: this.#refused(batch, rejected),
          message: `${rejected.length} of ${batch.length} record(s) refused: ${describe(rejected)}` });
      }
    } else if (status === 413 && batch.length > 1) {
      // Smaller bodies next time, and this one again in two halves.
      if (reply?.error === 'batch_too_large') this.#recordCap = Math.max(1, Math.floor(batch.length / 2));
      else this.#byteCap = Math.max(1024, Math.floor(this.#byteCap / 2));
      this.#queue.unshift(...batch);
    } else if (RETRY_STATUSES.has(status)) {
      this.#queue.unshift(...batch);
      this.#retryLater(status, retryAfter);
    } else {
      this.#stats.rejected += batch.length;
      this.#report({ reason: reply?.error ?? `http_${status}`, status, records: batch.length,
        message: reply?.message ?? `the exporter answered ${status}` });
    }
  }

  #refused(batch, rejected) {
    const byKind = {
      metric: batch.filter((item) => item.kind === 'metric'),
      event: batch.filter((item) => item.kind === 'event'),
    };
    return rejected.map(({ index, kind, errors }) => {
      const item = byKind[kind]?.[index];
      return { index, kind, errors, record: item ? JSON.parse(item.json) : undefined };
    });
  }

  #retryLater(status, retryAfter) {
    const over = this.#queue.length - this.#options.maxQueue;
    if (over > 0) this.#drop(this.#queue.splice(0, over), 'queue_full');
    this.#stats.retries += 1;
    const { retryBaseMs, retryMaxMs } = this.#options;
    const ceiling = Math.min(retryMaxMs, retryBaseMs * 2 ** this.#attempt);
    let delay = ceiling / 2 + Math.random() * (ceiling / 2); // jitter: clients do not return in step
    const asked = Number(retryAfter) * 1000;
    if (asked > delay) delay = Math.min(asked, 60_000);
    this.#attempt = Math.min(this.#attempt + 1, 20);
    if (!this.#unreachableReported) {
      this.#unreachableReported = true;
      this.#report({ reason: status ? `http_${status}` : 'unreachable', status, retrying: true,
        records: this.#queue.length,
        message: status
          ? `the exporter answered ${status}; retrying`
          : `cannot reach ${this.#options.baseUrl} (down, or this origin is not in its --cors-origins); retrying` });
    }
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = 0;
      this.#sendNext();
    }, delay);
  }

  // A closing tab's last updates: sent with keepalive, which outlives the page.
  #watchPage() {
    if (this.#pageWatched || typeof addEventListener !== 'function') return;
    this.#pageWatched = true;
    addEventListener('pagehide', () => this.#sendBeforeLeaving({ closing: true }));
    if (typeof document !== 'undefined') {
      document.addEventListener('visibilitychange', () => {
        if (document.visibilityState === 'hidden') this.#sendBeforeLeaving({ closing: false });
      });
    }
  }

  #sendBeforeLeaving({ closing }) {
    const flight = this.#inFlight;
    if (closing && flight && !flight.survivesUnload && !flight.resent) {
      // Its request dies with the page: send it again (at least once).
      flight.resent = true;
      this.#queue.unshift(...flight.batch);
    }
    clearTimeout(this.#batchTimer);
    clearTimeout(this.#retryTimer);
    this.#batchTimer = 0;
    this.#retryTimer = 0;
    let budget = KEEPALIVE_BYTES;
    while (this.#queue.length && budget > BODY_OVERHEAD + this.#queue[0].bytes) {
      const batch = this.#takeBatch(Math.min(budget, this.#byteCap));
      budget -= bytesOf(batch);
      this.#deliver(batch, { unloading: true })
        .then((result) => this.#settle(batch, result))
        .catch(() => this.#settle(batch, { status: 0, reply: null }));
    }
  }

  // ------------------------------------------------------------ sources that feed the exporter

  /**
   * With a URL: listen to your WebSocket server (`{type: 'user_metric', metric}` messages,
   * `{metrics, events}`, ...) and forward what arrives; reconnects after `reconnectMs`.
   * Without: open the exporter's own /ws and push over it instead of HTTP.
   */
  connectWebSocket(url) {
    if (url === undefined || url === null || url === '') {
      this.#pushSocketWanted = true;
      if (!this.#pushSocket) this.#openPushSocket();
      return { close: () => this.#closePushSocket() };
    }
    const key = `ws ${url}`;
    if (!this.#sources.has(key)) {
      this.#sources.set(key, this.#reconnecting(() => new WebSocket(url), 'message', (message) => {
        if (typeof message.data === 'string') this.#forwardText(message.data);
        else if (message.data?.text) message.data.text().then((text) => this.#forwardText(text));
      }));
    }
    return { close: () => this.#closeSource(key) };
  }

  /** Listen to your Server-Sent Events source and forward what arrives (any accepted shape). */
  connectSSE(url) {
    const key = `sse ${url}`;
    if (!this.#sources.has(key)) {
      const names = ['message', 'user_metric', 'metric', 'metrics', 'event', 'events'];
      this.#sources.set(key, this.#reconnecting(() => new EventSource(url), names,
        (message) => this.#forwardText(message.data)));
    }
    return { close: () => this.#closeSource(key) };
  }

  /** Fetch your REST endpoint (`{metrics, events}`) every `ms` and forward what is new. */
  startPolling(url, ms = 10_000) {
    this.stopPolling();
    const poller = { timer: 0, stopped: false, controller: new AbortController() };
    const poll = async () => {
      try {
        const response = await fetch(url, {
          headers: { Accept: 'application/json' },
          cache: 'no-cache',
          signal: poller.controller.signal,
        });
        if (!response.ok) throw new Error(`${url} answered ${response.status}`);
        this.#forward(await response.json());
        this.#sourceUp(url);
      } catch (error) {
        if (!poller.stopped) this.#sourceDown(url, error);
      }
      if (!poller.stopped) poller.timer = setTimeout(poll, Math.max(100, Number(ms) || 10_000));
    };
    this.#poller = poller;
    poll();
  }

  stopPolling() {
    const poller = this.#poller;
    this.#poller = null;
    if (!poller) return;
    poller.stopped = true;
    clearTimeout(poller.timer);
    poller.controller.abort();
  }

  /** A connection that opens again `reconnectMs` after it closes, until closed on purpose. */
  #reconnecting(open, names, onMessage) {
    const link = { connection: null, timer: 0, closed: false };
    const connect = () => {
      if (link.closed) return;
      let connection;
      try {
        connection = open();
      } catch (error) {
        this.#report({ reason: 'source', message: `cannot open the source: ${error}` });
        return;
      }
      link.connection = connection;
      for (const name of [names].flat()) connection.addEventListener(name, onMessage);
      connection.addEventListener('open', () => this.#sourceUp(connection.url));
      const retry = () => {
        if (link.closed || link.connection !== connection) return;
        connection.close();
        link.connection = null;
        this.#sourceDown(connection.url);
        clearTimeout(link.timer);
        link.timer = setTimeout(connect, this.#options.reconnectMs * (0.9 + Math.random() * 0.2));
      };
      connection.addEventListener('close', retry);
      // An EventSource retries by itself after a dropped connection, but gives up on an HTTP
      // error (CLOSED): then it is our turn.
      connection.addEventListener('error', () => {
        if (connection.readyState === 2 && typeof EventSource !== 'undefined'
            && connection instanceof EventSource) retry();
      });
    };
    connect();
    return {
      close: () => {
        link.closed = true;
        clearTimeout(link.timer);
        link.connection?.close();
        link.connection = null;
      },
    };
  }

  #closeSource(key) {
    this.#sources.get(key)?.close();
    this.#sources.delete(key);
  }

  #sourceUp(url) {
    this.#downSources.delete(url);
  }

  #sourceDown(url, error) {
    if (this.#downSources.has(url)) return; // once per outage
    this.#downSources.add(url);
    this.#report({ reason: 'source_unreachable', retrying: true,
      message: `source ${url} is unreachable${error ? ` (${error.message ?? error})` : ''}; retrying` });
  }

  #forwardText(text) {
    let body;
    try {
      body = JSON.parse(text);
    } catch {
      this.#report({ reason: 'not_json', message: 'a source sent a message that is not JSON' });
      return;
    }
    this.#forward(body);
  }

  #forward(body) {
    const { metrics, events } = recordsOf(body);
    if (metrics.length) this.#enqueue('metric', metrics, this.#seen);
    if (events.length) this.#enqueue('event', events, this.#seen);
  }

  #openPushSocket() {
    const url = new URL('ws', this.#options.baseUrl);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    if (this.#options.token) url.searchParams.set('access_token', this.#options.token);
    const socket = new PushSocket(url.href, () => {
      this.#sourceUp(url.href);
      this.#schedule();
    }, () => {
      if (this.#pushSocket !== socket) return;
      this.#pushSocket = null;
      if (this.#pushSocketWanted) this.#sourceDown(url.href, new Error('pushing over HTTP meanwhile'));
      if (this.#pushSocketWanted) {
        this.#pushSocketTimer = setTimeout(() => this.#openPushSocket(),
          this.#options.reconnectMs * (0.9 + Math.random() * 0.2));
      }
    });
    this.#pushSocket = socket;
  }

  #closePushSocket() {
    this.#pushSocketWanted = false;
    clearTimeout(this.#pushSocketTimer);
    this.#pushSocket?.close();
    this.#pushSocket = null;
  }

  // ------------------------------------------------------------ live data from the exporter

  /**
   * Call `callback` with the live summary: at once with the current one, then every second.
   * It carries the brief's names (`activeUsers`, ...) beside the exporter's. Returns the
   * function that unsubscribes.
   */
  onMetricsUpdate(callback) {
    const off = this.#listen('summary', callback);
    if (this.#lastSummary) {
      const summary = this.#lastSummary;
      queueMicrotask(() => this.#listeners.summary.has(callback) && safely(callback, summary));
    } else {
      this.#fetchSummary();
    }
    return off;
  }

  /** Call `callback` with each shopping event as it happens (once each, across reconnects). */
  onEvent(callback) {
    return this.#listen('event', callback);
  }

  /** Call `callback` with a shopper's public view each time they change. */
  onShopperUpdate(callback) {
    return this.#listen('shopper', callback);
  }

  /** Call `callback` with refused records and other failures (the service never throws). */
  onError(callback) {
    return this.#listen('error', callback);
  }

  /** Call `callback(state, info)` when the live stream connects (`live`) or drops. */
  onConnectionChange(callback) {
    const off = this.#listen('connection', callback);
    queueMicrotask(() => this.#listeners.connection.has(callback)
      && safely(callback, this.#connection, { reconnected: false, serverRestarted: false }));
    return off;
  }

  #listen(kind, callback) {
    if (typeof callback !== 'function') throw new TypeError(`the ${kind} listener must be a function`);
    this.#listeners[kind].add(callback);
    if (kind !== 'error') this.#updateLive();
    return () => {
      this.#listeners[kind].delete(callback);
      if (kind !== 'error') this.#updateLive();
    };
  }

  #emit(kind, ...args) {
    for (const callback of [...this.#listeners[kind]]) safely(callback, ...args);
  }

  #report(error) {
    if (this.#options.onError) safely(this.#options.onError, error);
    this.#emit('error', error);
  }

  async #fetchSummary() {
    try {
      const headers = { Accept: 'application/json' };
      if (this.#options.token) headers.Authorization = `Bearer ${this.#options.token}`;
      const response = await fetch(new URL('api/summary', this.#options.baseUrl), { headers });
      if (response.ok && !this.#lastSummary) this.#applySummary(await response.json());
    } catch {
      // the stream delivers one within a second
    }
  }

  #applySummary(summary) {
    this.#lastSummary = withBriefNames(summary);
    this.#emit('summary', this.#lastSummary);
  }

  /** The frame kinds someone listens to; the summary always, as the stream's heartbeat. */
  #wantedKinds() {
    const { summary, event, shopper, connection } = this.#listeners;
    if (!summary.size && !event.size && !shopper.size && !connection.size) return '';
    return ['summary', event.size && 'event', shopper.size && 'user_metric'].filter(Boolean).join(',');
  }

  // Subscriptions made in the same tick share one stream: it opens (or changes) after them.
  #updateLive() {
    if (this.#liveUpdateQueued) return;
    this.#liveUpdateQueued = true;
    queueMicrotask(() => {
      this.#liveUpdateQueued = false;
      const kinds = this.#wantedKinds();
      if (!kinds) this.#closeLive();
      else if (!this.#live || this.#live.kinds !== kinds) this.#openLive(kinds);
    });
  }

  #setConnection(state, info = {}) {
    if (state === this.#connection && !info.serverRestarted) return;
    this.#connection = state;
    this.#emit('connection', state, { reconnected: false, serverRestarted: false, ...info });
  }

  // We close and reopen the EventSource ourselves, rather than leave it to the browser's retry,
  // to back off while the exporter is down and to resume with ?lastEventId= (which needs no
  // CORS preflight, unlike a Last-Event-ID header).
  #openLive(kinds = this.#live?.kinds ?? this.#wantedKinds()) {
    const previous = this.#live;
    previous?.source?.close();
    clearTimeout(previous?.retryTimer);
    clearTimeout(previous?.staleTimer);
    const live = {
      kinds,
      source: null,
      lastEventId: previous?.lastEventId ?? '',
      newestEventId: previous?.newestEventId ?? 0,
      retryDelay: previous?.retryDelay ?? 1000,
      retryTimer: 0,
      staleTimer: 0,
      lost: previous?.lost ?? false,
    };
    this.#live = live;
    const url = new URL('api/stream', this.#options.baseUrl);
    url.searchParams.set('types', kinds);
    if (live.lastEventId) url.searchParams.set('lastEventId', live.lastEventId);
    if (this.#options.token) url.searchParams.set('access_token', this.#options.token);
    const source = new EventSource(url.href);
    live.source = source;
    if (this.#connection !== 'live') this.#setConnection('connecting');
    source.addEventListener('open', () => {
      if (this.#live !== live) return;
      live.retryDelay = 1000;
      const reconnected = live.lost;
      live.lost = false;
      this.#setConnection('live', { reconnected });
    });
    source.addEventListener('error', () => this.#liveLost(live));
    source.addEventListener('summary', (frame) => this.#liveFrame(live, frame, (data) => this.#applySummary(data)));
    source.addEventListener('user_metric', (frame) => this.#liveFrame(live, frame, (data) => this.#emit('shopper', data)));
    source.addEventListener('event', (frame) => this.#liveFrame(live, frame, (data) => this.#applyEvent(live, data, frame)));
    this.#armStaleTimer(live);
  }

  #liveLost(live) {
    if (this.#live !== live) return;
    live.source?.close();
    live.source = null;
    live.lost = true;
    clearTimeout(live.staleTimer);
    this.#setConnection('disconnected');
    clearTimeout(live.retryTimer);
    live.retryTimer = setTimeout(() => this.#live === live && this.#openLive(),
      live.retryDelay + Math.random() * 300);
    live.retryDelay = Math.min(live.retryDelay * 2, this.#options.reconnectMs * 2);
  }

  #armStaleTimer(live) {
    clearTimeout(live.staleTimer);
    live.staleTimer = setTimeout(() => this.#liveLost(live), this.#options.staleMs);
  }

  #liveFrame(live, frame, apply) {
    if (this.#live !== live) return;
    this.#armStaleTimer(live);
    const id = frame.lastEventId;
    if (id && live.lastEventId && Number(id) < Number(live.lastEventId)) {
      // Ids went down: the exporter restarted with an empty log. Resume from where it is now
      // (from just before this frame, when it is an event, so that event is not lost).
      live.lastEventId = frame.type === 'event' ? String(Number(id) - 1) : id;
      live.newestEventId = 0;
      this.#setConnection('live', { serverRestarted: true });
      this.#openLive();
      return;
    }
    if (id) live.lastEventId = id;
    let data;
    try {
      data = JSON.parse(frame.data);
    } catch {
      return; // a malformed frame must not take the page down
    }
    apply(data);
  }

  #applyEvent(live, event, frame) {
    if (event.id == null && frame.lastEventId) event.id = Number(frame.lastEventId);
    if (event.id != null) {
      if (event.id <= live.newestEventId) return; // already delivered before a reconnect
      live.newestEventId = event.id;
    }
    this.#emit('event', event);
  }

  #closeLive() {
    const live = this.#live;
    this.#live = null;
    if (!live) return;
    live.source?.close();
    clearTimeout(live.retryTimer);
    clearTimeout(live.staleTimer);
    this.#lastSummary = null;
    this.#connection = 'disconnected';
  }

  /**
   * Close everything this client opened: WebSockets, SSE sources, polling, the live stream
   * (its listeners are forgotten). Queued pushes are still sent, over HTTP.
   */
  disconnect() {
    this.#closePushSocket();
    for (const key of [...this.#sources.keys()]) this.#closeSource(key);
    this.stopPolling();
    for (const kind of ['summary', 'event', 'shopper', 'connection']) this.#listeners[kind].clear();
    this.#closeLive();
    this.#schedule();
  }
}

/** The size of a batch's body, near enough to keep within limits. */
function bytesOf(batch) {
  return batch.reduce((sum, item) => sum + item.bytes + 1, BODY_OVERHEAD);
}

function describe(rejected) {
  return rejected.slice(0, 3).map(({ index, kind, errors }) =>
    `${kind} ${index}: ${errors.map((e) => `${e.field} ${e.message}`).join('; ')}`).join(' | ')
    + (rejected.length > 3 ? ' | …' : '');
}

// ------------------------------------------------------------ the brief's mock data helper

const FIRST_NAMES = ['Sarah', 'Miguel', 'Aisha', 'Tom', 'Priya', 'Jonas', 'Mei', 'Carlos', 'Fatima',
  'Liam', 'Olivia', 'Noah', 'Emma', 'Kenji', 'Zoe', 'Omar'];
const LAST_NAMES = ['Johnson', 'Garcia', 'Khan', 'Becker', 'Patel', 'Novak', 'Chen', 'Silva',
  'Haddad', 'Murphy', 'Rossi', 'Kim', 'Okafor', 'Tanaka', 'Dubois', 'Lopez'];
const CITIES = ['San Francisco, CA', 'Austin, TX', 'Seattle, WA', 'Chicago, IL', 'Denver, CO',
  'Boston, MA', 'Miami, FL', 'Portland, OR'];
const ACTIVITIES = ['Browsing', 'Search', 'Product', 'Cart', 'Checkout', 'Delivery'];
const MEMBERSHIPS = ['Free', 'Premium', 'Premium+'];
const WINDOWS = ['Today', 'Tomorrow', 'This week'];
const LAST_ACTIONS = {
  Browsing: 'Browsed produce aisle', Search: 'Searched for "oat milk"', Product: 'Viewed product',
  Cart: 'Added item to cart', Checkout: 'Started checkout', Delivery: 'Scheduled delivery',
};

const pick = (list) => list[Math.floor(Math.random() * list.length)];
const between = (low, high) => low + Math.floor(Math.random() * (high - low + 1));

/** `n` realistic shoppers (ids shopper_mock_1 … n), like the brief's example helper. */
export function generateMockMetrics(n = 10) {
  const now = new Date().toISOString();
  return Array.from({ length: Math.max(0, Math.floor(n)) }, (_, i) => {
    const first = pick(FIRST_NAMES);
    const last = pick(LAST_NAMES);
    const activeFeature = pick(ACTIVITIES);
    const used = ACTIVITIES.slice(0, Math.max(1, ACTIVITIES.indexOf(activeFeature) + 1));
    const itemsInCart = ['Cart', 'Checkout', 'Delivery'].includes(activeFeature) ? between(1, 18) : between(0, 3);
    const pageViews = between(3, 60);
    return {
      userId: `shopper_mock_${i + 1}`,
      userName: `${first} ${last}`,
      email: `${first}.${last}@example.com`.toLowerCase(),
      company: pick(CITIES),
      timestamp: now,
      sessionDuration: between(1, 45),
      pageViews,
      clickCount: pageViews * between(2, 4),
      scrollDepth: between(10, 100),
      featuresUsed: used,
      activeFeature,
      featureTime: Object.fromEntries(used.map((feature) => [feature, between(1, 10)])),
      eventsTriggered: between(2, 40),
      cartValue: itemsInCart ? Math.round(itemsInCart * between(300, 1500)) / 100 : 0,
      itemsInCart,
      productsViewed: between(1, 50),
      searchesPerformed: between(0, 8),
      couponsApplied: between(0, 2),
      membershipType: pick(MEMBERSHIPS),
      deliveryWindow: pick(WINDOWS),
      queriesRun: between(0, 8),
      reportsCreated: 0,
      dashboardsViewed: 0,
      isActive: true,
      lastAction: LAST_ACTIONS[activeFeature],
      lastActionTime: now,
    };
  });
}

/** Ready to use: pushes to (and listens on) the exporter this module was loaded from. */
export const metricsService = new MetricsService();

export default metricsService;
