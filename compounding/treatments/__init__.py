"""Treatment pages: patients, the sessions in which batches are injected, adverse events."""
