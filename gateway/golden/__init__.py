"""Golden sets: a route's critical questions with what their answers must be, run before a backend
change takes traffic, on a schedule against the live primary, and from the command line."""
