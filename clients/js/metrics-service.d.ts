// Types of the Live Shopper Metrics browser client (metrics-service.js).

/** One shopper's current state: the brief's record. `userId` is the key; a repeat updates. */
export interface UserMetric {
  // Identity
  userId: string;
  userName: string;
  /** Accepted and dropped on arrival: the exporter never stores or shows an email. */
  email?: string;
  /** Used for location (e.g. "San Francisco, CA"). */
  company?: string;

  // Time
  /** ISO 8601 (no zone means UTC). */
  timestamp: string;

  // Activity
  /** Minutes. */
  sessionDuration?: number;
  pageViews?: number;
  clickCount?: number;
  /** 0–100. */
  scrollDepth?: number;

  // Shopping behaviour
  /** e.g. ['Browsing', 'Cart', 'Checkout']. */
  featuresUsed?: string[];
  /** The current activity. */
  activeFeature?: string;
  /** Minutes per activity. */
  featureTime?: Record<string, number>;

  // E-commerce specific
  /** Dollars. */
  cartValue?: number;
  itemsInCart?: number;
  productsViewed?: number;
  searchesPerformed?: number;
  couponsApplied?: number;
  /** 'Free', 'Premium', 'Premium+'. */
  membershipType?: string;
  /** 'Today', 'Tomorrow', ... */
  deliveryWindow?: string;

  // Engagement
  eventsTriggered?: number;
  /** Product searches. */
  queriesRun?: number;
  reportsCreated?: number;
  dashboardsViewed?: number;

  // Status
  isActive: boolean;
  /** 'Added item to cart', 'Scheduled delivery', ... ("placed order" counts an order). */
  lastAction?: string;
  /** ISO 8601. */
  lastActionTime?: string;
}

/** The brief's "Minimum Required" fields. */
export type MinimalUserMetric = Pick<UserMetric, 'userId' | 'userName' | 'timestamp' | 'isActive'>;

/** Event types the exporter counts by name; any other name is kept and counted as `other`. */
export type ShoppingEventType =
  | 'session_started'
  | 'product_viewed'
  | 'search'
  | 'cart_add'
  | 'cart_remove'
  | 'checkout_started'
  | 'order_completed'
  | 'delivery_scheduled'
  | 'coupon_applied'
  | 'session_ended'
  | 'cart_abandoned';

/** An explicit shopping event to push. */
export interface ShoppingEvent {
  type: ShoppingEventType | (string & {});
  userId: string;
  /** ISO 8601. */
  timestamp: string;
  userName?: string;
  /** order_completed: the same id counts once. */
  orderId?: string;
  orderValue?: number;
  items?: number;
  cartValue?: number;
  itemsInCart?: number;
  deliveryWindow?: string;
  query?: string;
  product?: string;
  category?: string;
  coupon?: string;
  activity?: string;
  reason?: string;
  summary?: string;
}

/** A shopping event as the exporter streams it (its own and derived ones), with its id. */
export interface StreamEvent {
  id: number;
  type: string;
  time: string;
  userId: string;
  userName?: string;
  message?: string;
  location?: string;
  activity?: string;
  [property: string]: unknown;
}

/** A shopper as the exporter shows them (`/api/shoppers`, `onShopperUpdate`). */
export interface ShopperView {
  userId: string;
  userName: string;
  location: string;
  membershipType: string;
  deliveryWindow: string;
  activeFeature: string;
  featuresUsed: string[];
  /** Minutes per activity, as pushed. */
  featureTime: Record<string, number>;
  /** Updated recently and `isActive`. */
  online: boolean;
  isActive: boolean;
  sessionSeconds: number;
  sessionStartedAt: string | null;
  cartValue: number;
  itemsInCart: number;
  pageViews: number;
  clickCount: number;
  scrollDepth: number;
  productsViewed: number;
  searchesPerformed: number;
  couponsApplied: number;
  eventsTriggered: number;
  lastAction: string;
  lastActionTime: string | null;
  timestamp: string | null;
  lastSeen: string | null;
}

export interface ActivityShare {
  activity: string;
  shoppers: number;
  share: number;
}

/** `/api/summary`: the brief's key metrics in the exporter's names. */
export interface MetricsSummary {
  time: string;
  activeShoppers: number;
  trackedShoppers: number;
  activeCarts: number;
  cartItems: number;
  totalCartValue: number;
  averageCartValue: number;
  ordersLastHour: number;
  orderValueLastHour: number;
  abandonmentsLastHour: number;
  cartAbandonmentRate: number;
  averageSessionSeconds: number;
  productViews: number;
  searches: number;
  pageViews: number;
  ordersTotal: number;
  cartItemsAdded: number;
  cartItemsRemoved: number;
  eventsPerSecond: number;
  eventsTotal: number;
  activityDistribution: ActivityShare[];
  topActivities: ActivityShare[];
  activitySeconds: Record<string, number>;
  funnel: Record<'browsing' | 'cart' | 'checkout' | 'order', number>;
}

/** The same figures under the brief's names. */
export interface BriefMetrics {
  /** Currently shopping users (= activeShoppers). */
  activeUsers: number;
  /** Shoppers tracked, online or not (= trackedShoppers). */
  totalUsers: number;
  /** Average session of online shoppers, in minutes. */
  avgSessionDuration: number;
  totalEvents: number;
  eventsPerMinute: number;
  /** Top 5 activities by online shoppers. */
  topFeatures: Array<{ feature: string; count: number }>;
  /** Total value of all active carts, dollars. */
  cartValue: number;
  ordersPerHour: number;
  /** Abandoned ÷ (abandoned + ordered) carts over the last hour, 0–1. */
  cartAbandonment: number;
  searchActivity: number;
}

/** What `onMetricsUpdate` delivers: the summary with the brief's names beside it. */
export type LiveMetrics = MetricsSummary & BriefMetrics;

export interface FieldError {
  field: string;
  message: string;
}

/** A record the exporter refused, with its reasons and the record itself. */
export interface RefusedRecord {
  index: number;
  kind: 'metric' | 'event';
  errors: FieldError[];
  record?: UserMetric | ShoppingEvent;
}

/** What `onError` receives. Nothing is ever thrown into the page. */
export interface MetricsServiceError {
  /**
   * `rejected` (records refused, see `rejected`), `unauthorized`, `origin_not_allowed`,
   * `too_large`, `queue_full` (oldest dropped), `unreachable` (retrying), `http_<status>`,
   * `invalid`, `not_json`, `source`, `source_unreachable`.
   */
  reason: string;
  message: string;
  status?: number;
  /** How many records this is about. */
  records?: number;
  rejected?: RefusedRecord[];
  /** True when the client keeps trying. */
  retrying?: boolean;
}

export interface MetricsServiceOptions {
  /** The exporter, e.g. 'https://metrics.shop.example/'. Default: where the module came from. */
  baseUrl?: string;
  /** The exporter's write token (sent as a bearer token). Public in a public page. */
  token?: string;
  /** Pushes within this many milliseconds go as one body. Default 250. */
  batchMs?: number;
  /** Records per body. Default 1000. */
  maxBatch?: number;
  /** Bytes per body. Default 512 KiB. */
  maxBodyBytes?: number;
  /** Records kept while the exporter is unreachable; the oldest are dropped past it. Default 10,000. */
  maxQueue?: number;
  /** First retry delay (doubles, jittered). Default 500 ms. */
  retryBaseMs?: number;
  /** Longest retry delay. Default 15 s. */
  retryMaxMs?: number;
  /** Wait before a dropped WebSocket or SSE source reconnects. Default 5 s. */
  reconnectMs?: number;
  /** Silence on the live stream that counts as a dead link. Default 10 s. */
  staleMs?: number;
  /**
   * Replicas behind `baseUrl` (a proxy such as the exporter's deploy/haproxy.cfg), each started
   * with `--shard INDEX/shards`: every body then holds the records of one shard
   * (`shardOf(userId, shards)`) and names it in the `X-Shopper-Shard` header the proxy routes
   * by; pushes go over HTTP even after `connectWebSocket()`. 0 (the default): one exporter.
   */
  shards?: number;
  onError?: ((error: MetricsServiceError) => void) | null;
}

export interface ClientStats {
  queued: number;
  sent: number;
  requests: number;
  accepted: number;
  ignored: number;
  rejected: number;
  dropped: number;
  retries: number;
}

export type ConnectionState = 'connecting' | 'live' | 'disconnected';

export interface ConnectionInfo {
  /** The stream came back after a loss (reload anything not streamed). */
  reconnected: boolean;
  /** The exporter restarted with an empty event log; event ids start again. */
  serverRestarted: boolean;
}

/** Something `connect*` opened; `close()` ends it (so does `disconnect()`). */
export interface Connection {
  close(): void;
}

export type Unsubscribe = () => void;

export declare class MetricsService {
  constructor(options?: MetricsServiceOptions);
  configure(options: MetricsServiceOptions): this;
  readonly options: Required<MetricsServiceOptions>;
  readonly stats: ClientStats;

  pushUserMetric(metric: UserMetric): void;
  pushBulkMetrics(metrics: UserMetric[]): void;
  pushEvents(events: ShoppingEvent[]): void;
  /** Send what is queued now. */
  flush(): Promise<void>;

  /** Your WebSocket server (forwarded to the exporter), or with no URL the exporter's /ws for pushing. */
  connectWebSocket(url?: string): Connection;
  connectSSE(url: string): Connection;
  startPolling(url: string, ms?: number): void;
  stopPolling(): void;

  onMetricsUpdate(callback: (metrics: LiveMetrics) => void): Unsubscribe;
  onEvent(callback: (event: StreamEvent) => void): Unsubscribe;
  onShopperUpdate(callback: (shopper: ShopperView) => void): Unsubscribe;
  onError(callback: (error: MetricsServiceError) => void): Unsubscribe;
  onConnectionChange(callback: (state: ConnectionState, info: ConnectionInfo) => void): Unsubscribe;

  disconnect(): void;
}

/** Ready to use against the exporter the module was loaded from. */
export declare const metricsService: MetricsService;
export default metricsService;

/** `n` realistic mock shoppers (ids shopper_mock_1 … n), as in the brief's example. */
export declare function generateMockMetrics(n?: number): UserMetric[];

/** The records of any body shape the exporter accepts. */
export declare function recordsOf(body: unknown): { metrics: UserMetric[]; events: ShoppingEvent[] };

/** A summary with the brief's names added. */
export declare function withBriefNames(summary: MetricsSummary): LiveMetrics;

/**
 * The shard (0 to count - 1) that owns `userId` among `count` exporters: jump consistent hash of
 * the 64-bit FNV-1a hash of its UTF-8 bytes, the same function as the exporter's `shard_of`.
 * Throws a TypeError for a userId that is not a string, a RangeError for a count that is not an
 * integer from 1 to 2^31 - 1.
 */
export declare function shardOf(userId: string, count: number): number;
