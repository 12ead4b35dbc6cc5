"""Live rules: every applied rules document is a stored version; replicas serve the newest one.

``store``: where versions live (Redis, shared by replicas; a directory; memory). ``bootstrap``:
what a starting replica serves. ``checks``: full validation. ``coordinator``: applies, rolls back,
follows the store and the rules file. ``samples`` and ``dry_run``: what a proposed document would
change for recent real requests.
"""
