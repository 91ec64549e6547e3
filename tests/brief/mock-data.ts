// The brief's "Test with Mock Data" example, as written; only the import paths are changed.
import { metricsService } from 'live-shopper-metrics-client';

// Generate 10 fake shoppers
import { generateMockMetrics } from 'live-shopper-metrics-client';

const mockShoppers = generateMockMetrics(10);
metricsService.pushBulkMetrics(mockShoppers);
