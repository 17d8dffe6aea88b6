"""hipush's benchmark, side by side with Nchan: `make bench` (full) and `make bench-quick` (a few minutes).

Modules: __main__ (the run: profiles, systems, results), scenarios (parked, unicast, fanout, metrics_cost, soak),
systems (starting hipush under gunicorn and Nchan under nginx; hipush's Redis and database),
agents (the orchestrator's side of the load-generator processes), loadgen (the load generator itself),
protocols (the only hipush/Nchan-specific client code), httpclient (a minimal HTTP/1.1 client),
procstat (RSS and CPU from /proc), report (markdown, JSON, charts).
"""
