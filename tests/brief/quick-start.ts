// The brief's Quick Integration, Steps 1 and 2, as written; only the import path is changed.
import { metricsService } from 'live-shopper-metrics-client';

metricsService.pushUserMetric({
  userId: 'shopper_123',
  userName: 'Sarah Johnson',
  email: 'sarah@email.com',
  company: 'San Francisco, CA',  // Location
  timestamp: new Date().toISOString(),
  sessionDuration: 15,  // minutes
  pageViews: 28,
  clickCount: 87,
  scrollDepth: 65,
  featuresUsed: ['Browsing', 'Cart', 'Checkout'],
  activeFeature: 'Cart',
  featureTime: { 'Browsing': 8, 'Cart': 5, 'Checkout': 2 },
  eventsTriggered: 18,
  
  // E-commerce specific fields
  cartValue: 127.50,
  itemsInCart: 12,
  productsViewed: 35,
  searchesPerformed: 4,
  couponsApplied: 1,
  membershipType: 'Premium',
  deliveryWindow: 'Today',
  
  queriesRun: 4,
  reportsCreated: 0,
  dashboardsViewed: 0,
  isActive: true,
  lastAction: 'Added item to cart',
  lastActionTime: new Date().toISOString(),
});
