"""What the tests and the benchmarks both use: the fault-injecting upstream, its rules, free ports.

Not part of the installed package."""
