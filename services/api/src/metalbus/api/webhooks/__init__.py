"""Outbound webhooks: subscriptions, signed deliveries, retries and their log (docs/webhooks.md)."""
