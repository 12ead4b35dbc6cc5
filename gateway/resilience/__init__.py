"""Time, failures and load: deadlines, the backend race with fallback and hedging, breakers, health checks."""
