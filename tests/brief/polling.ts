// The brief's "Then poll it" line, as written (type-checked only: the URL is the brief's).
import { metricsService } from 'live-shopper-metrics-client';

metricsService.startPolling('https://your-api.com/metrics', 10000);
