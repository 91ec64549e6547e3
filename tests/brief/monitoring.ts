// The brief's "Real-time Shopping Monitoring" use case, as written; only the import is added.
import { metricsService } from 'live-shopper-metrics-client';

// Subscribe to updates
metricsService.onMetricsUpdate((metrics) => {
  console.log(`${metrics.activeUsers} shoppers active`);
  
  if (metrics.activeUsers > 100) {
    alert('Shopping traffic spike!');
  }
  
  // Monitor cart abandonment
  const activeCarts = metrics.activeUsers * 0.7; // Estimated
  const avgCartValue = 87.50; // Calculate from data
  console.log(`Potential revenue at risk: $${activeCarts * avgCartValue}`);
});
