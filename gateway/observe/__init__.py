"""What the gateway observes of its traffic: metrics, the access log, cost-report tallies and the
dry run's routing samples. Each is fed from a request's outcome; nothing here imports the request
path, the admin API or the live rules above it."""
