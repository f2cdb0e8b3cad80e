"""REST tickets: integration keys, the ticket service, batches of drafts."""
