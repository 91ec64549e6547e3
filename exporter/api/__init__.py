"""HTTP and streaming adapters: they decode requests and hand records to the ingestor."""
