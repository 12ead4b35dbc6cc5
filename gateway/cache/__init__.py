"""The response cache: keys, stores (memory, Redis, Cluster, Sentinel), single flight, the semantic cache."""
