"""Source adapters for cme-batch: each implements cme_batch.sources.Source."""
