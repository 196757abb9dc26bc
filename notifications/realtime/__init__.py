"""Real time: the stream hub, subscriptions, leases and the event generators."""
