"""Real time: each worker's stream hub, its watcher, subscriptions, leases and generators."""
