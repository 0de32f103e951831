"""Event webhooks: the user's own services told when money moves (outbox, signed delivery, endpoints)."""
