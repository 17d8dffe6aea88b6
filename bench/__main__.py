"""Run the benchmark: `python -m bench [--quick]` (what `make bench` / `make bench-quick` do).

Starts hipush (1 and 2 gevent workers; 2 on a local 3-master Redis Cluster) and Nchan (nginx, 2 workers)
one at a time on loopback, drives
each with the same load generator, and writes bench/results/<name>.md, .json and the charts.
`python -m bench --help` lists the knobs (sizes, systems, scenarios, database).
"""
import argparse
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from . import procstat, report, scenarios, systems

RESULTS = Path(__file__).resolve().parent / "results"
SYSTEMS = ("hipush-1w", "hipush-2w", "hipush-2w-cluster", "nchan-2w")
CLUSTER = "-cluster"  # a hipush label ending so runs on a local Redis Cluster (systems.ClusterBackend)
SCENARIOS = ("floor", "parked", "sse_parked", "unicast", "sse_unicast", "sse_batch", "fanout", "sse_fanout",
             "metrics_cost", "soak")
SSE_RESULTS = {"sse_parked": "parked_sse", "sse_unicast": "unicast_sse", "sse_batch": "unicast_batch",
               "sse_fanout": "fanout_sse"}

PROFILES = {
    "full": dict(
        parked_levels=[1000, 5000, 10000, 15000], parked_hold_s=60,  # one whole poll timeout (55 s): steady state
        sse_parked_levels=[1000, 10000],
        unicast_clients=2000, rates=[200, 1000, 2000], step_s=15,
        ramp=[3000, 4000, 5000, 6000, 8000, 10000, 12000, 16000], ramp_step_s=10, drain_s=5, step_overrun_s=10,
        fanout_sizes=[1000, 10000], fanout_rounds=3, fanout_wait_s=60,
        soak_s=600, soak_unicast=1000, soak_fanout=1000, soak_idle=3000, soak_rate=100,
        soak_fanout_every_s=10, soak_churn=0.01, soak_sample_s=10,
        one_worker_scenarios=["parked", "unicast", "fanout"],  # the soak runs hipush as deployed: 2 workers
        sse_rates=[1000, 2000], sse_ramp=[3000, 3500, 4000, 5000, 6000, 8000, 10000],
        batch_rates=[2000], batch_ramp=[4000, 6000, 8000, 10000, 12000, 16000], floor_s=10,
        metrics_cost_pairs=4, metrics_cost_runs=3, metrics_cost_messages=3000,  # 12 runs each of on and off
    ),
    "quick": dict(
        parked_levels=[1000], parked_hold_s=3, sse_parked_levels=[1000],
        unicast_clients=1000, rates=[200, 1000, 2000], step_s=2,
        ramp=[3000, 4000, 6000], ramp_step_s=2, drain_s=2, step_overrun_s=1,
        fanout_sizes=[1000], fanout_rounds=2, fanout_wait_s=20,
        soak_s=0, soak_unicast=0, soak_fanout=0, soak_idle=0, soak_rate=0,
        soak_fanout_every_s=10, soak_churn=0.0, soak_sample_s=10,
        one_worker_scenarios=["parked"],  # hipush-1w only here: the ratio column compares 2 workers with 2
        sse_rates=[1000], sse_ramp=[2000, 3500, 5000], batch_rates=[2000], batch_ramp=[4000, 8000], floor_s=3,
        metrics_cost_pairs=2, metrics_cost_runs=2, metrics_cost_messages=1000,
    ),
}
COMMON = dict(subscriber_procs=2, rate_per_publisher=2500, publish_concurrency=64, open_rate=3000, park_batch=1000,
              batch_size=100, floor_connections=50, metrics_cost_clients=20, metrics_cost_warmup=300)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller N, shorter steps, no soak (make bench-quick)")
    parser.add_argument("--name", help="output file stem (default: bench, or bench-quick with --quick)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"output directory (default {RESULTS})")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma list of {', '.join(SYSTEMS)}")
    parser.add_argument("--scenarios", help=f"comma list of {', '.join(SCENARIOS)} (default: all; --quick: no soak)")
    parser.add_argument("--database", default="mariadb",
                        help="hipush's database: mariadb (root@127.0.0.1:3306, database hipush_bench, made if "
                             "missing, hipush's tables dropped first), sqlite (a file in the run's temporary "
                             "directory) or a SQLAlchemy URL")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/10",
                        help="hipush's Redis, flushed at every server start ('' = hipush's embedded redis-server)")
    parser.add_argument("--parked-levels", help="comma list of parked-poll counts, e.g. 1000,5000,10000")
    parser.add_argument("--unicast-clients", type=int)
    parser.add_argument("--rates", help="comma list of fixed unicast rates (msg/s)")
    parser.add_argument("--ramp", help="comma list of ramp rates (msg/s); empty for none")
    parser.add_argument("--step-seconds", type=float, help="length of each unicast rate step")
    parser.add_argument("--hold-seconds", type=float, help="how long each parked level is held (idle CPU window)")
    parser.add_argument("--drain-seconds", type=float, help="wait for late messages after a unicast step")
    parser.add_argument("--fanout-sizes", help="comma list of fan-out subscriber counts")
    parser.add_argument("--soak-seconds", type=float)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="override any profile value, e.g. --set soak_idle=500 --set 'rates=[100,300]'")
    parser.add_argument("--hipush-root", type=Path, default=systems.ROOT,
                        help="the hipush source tree to run (default: this repository), e.g. a `git archive` "
                             "export of another commit")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy each hipush worker during the highest fixed unicast rate (SVGs beside the results)")
    parser.add_argument("--no-charts", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the run's temporary directory (server logs)")
    return parser.parse_args(argv)


def make_profile(args) -> dict:
    p = {**PROFILES["quick" if args.quick else "full"], **COMMON}
    ints = lambda text: [int(x) for x in text.split(",") if x.strip()]  # noqa: E731
    if args.parked_levels:
        p["parked_levels"] = ints(args.parked_levels)
    if args.unicast_clients:
        p["unicast_clients"] = args.unicast_clients
    if args.rates:
        p["rates"] = ints(args.rates)
    if args.ramp is not None:
        p["ramp"] = ints(args.ramp)
    if args.step_seconds:
        p["step_s"] = p["ramp_step_s"] = args.step_seconds
    if args.hold_seconds:
        p["parked_hold_s"] = args.hold_seconds
    if args.drain_seconds:
        p["drain_s"] = args.drain_seconds
    if args.fanout_sizes:
        p["fanout_sizes"] = ints(args.fanout_sizes)
    if args.soak_seconds is not None:
        p["soak_s"] = args.soak_seconds
        if args.soak_seconds and not p["soak_unicast"]:
            p.update({k: PROFILES["full"][k] for k in ("soak_unicast", "soak_fanout", "soak_idle", "soak_rate",
                                                       "soak_churn")})
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in p:
            sys.exit(f"--set: unknown profile key {key!r}; known: {', '.join(sorted(p))}")
        p[key] = json.loads(value)
    return p


def machine_facts() -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {"cores": os.cpu_count(), "mem_total_gb": round(procstat.mem_total_kb() / 1024 / 1024, 1),
            "open_files": f"{soft}/{hard}", "kernel": platform.release(), "loadavg_start": procstat.loadavg()}


def package_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("gevent", "greenlet", "redis", "hiredis", "gunicorn", "Flask", "SQLAlchemy", "PyMySQL"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    name = args.name or ("bench-quick" if args.quick else "bench")
    profile = make_profile(args)
    labels = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(labels) - set(SYSTEMS)
    if unknown:
        sys.exit(f"unknown systems: {', '.join(sorted(unknown))}")
    wanted = [s.strip() for s in (args.scenarios or ",".join(
        s for s in SCENARIOS if not (s == "soak" and (args.quick or not profile["soak_s"])))).split(",") if s.strip()]
    hipush_labels = [lb for lb in labels if lb.startswith("hipush")]
    needs = [profile["unicast_clients"] if {"unicast", "sse_unicast", "sse_batch"} & set(wanted) else 0]
    if "parked" in wanted:
        needs.append(max(profile["parked_levels"], default=0))
    if "sse_parked" in wanted:
        needs.append(max(profile["sse_parked_levels"], default=0))
    if {"fanout", "sse_fanout"} & set(wanted):
        needs.append(max(profile["fanout_sizes"], default=0))
    if "soak" in wanted:
        needs.append(profile["soak_unicast"] + profile["soak_fanout"] + profile["soak_idle"])
    max_hipush = max((int(lb.split("-")[1][:-1]) for lb in hipush_labels), default=0) * \
        systems.HIPUSH_MAX_PARKED_PER_WORKER
    profile["clients_needed"] = min(max(needs), max_hipush) if max_hipush else 0

    systems.HIPUSH_ROOT = args.hipush_root.resolve()
    sys.path.insert(0, str(systems.HIPUSH_ROOT))  # the orchestrator's own hipush imports (schema, embedded Redis)
    run_dir = Path(tempfile.mkdtemp(prefix="hpb-", dir="/tmp"))  # short: it may hold a unix socket
    started, started_at = time.monotonic(), time.strftime("%Y-%m-%d %H:%M:%S %Z")
    print(f"bench {name}: systems {', '.join(labels)}; scenarios {', '.join(wanted)}; run dir {run_dir}", flush=True)
    results = {"name": name, "mode": "quick" if args.quick else "full", "started_at": started_at,
               "systems": labels, "scenarios": wanted, "profile": profile, "machine": machine_facts(),
               "versions": package_versions(), "hipush_root": str(systems.HIPUSH_ROOT), "notes": [], "parked": {},
               "unicast": {}, "fanout": {}, "soak": {},
               **{key: {} for key in SSE_RESULTS.values()}}
    if any(label.startswith("nchan") for label in labels):  # nginx is installed by `make bench`, not `make test`
        results["versions"].update(nginx=systems.nginx_version(), nchan=systems.nchan_package_version())
    backend = cluster_backend = None
    failed = False
    try:
        if hipush_labels:
            backend = systems.HipushBackend(args.redis_url, args.database, run_dir)
            results["versions"].update(backend.versions())
        if any(label.endswith(CLUSTER) for label in hipush_labels):
            cluster_backend = systems.ClusterBackend(backend)
            results["versions"]["redis_cluster"] = f"{cluster_backend.cluster.masters} masters with a replica each"

        def make_server(label):
            workers = int(label.split("-")[1][:-1])
            if label.startswith("hipush"):
                return systems.HipushServer(label, workers, cluster_backend if label.endswith(CLUSTER) else backend,
                                            run_dir)
            return systems.NchanServer(label, workers, run_dir)

        ctx = scenarios.Context(profile, run_dir, args.out, name, make_server, backend, args.profile,
                                log=lambda text: print(text, flush=True), scenarios=wanted)
        args.out.mkdir(parents=True, exist_ok=True)
        run_order = sorted(labels, key=lambda lb: lb != "hipush-2w")  # the first hipush registers the clients
        for scenario in wanted:
            if scenario == "floor":  # not a system of its own: the Flask floor beneath hipush, once a run
                print("== floor: hello-world Flask, 2 gevent workers", flush=True)
                results["floor"] = scenarios.floor(ctx, systems.FloorServer(2, run_dir))
                continue
            if scenario == "metrics_cost":  # servers of its own, 1 worker each (bench/cpu_per_message.py)
                print("== metrics_cost: hipush-1w, metrics counting on and off, alternating", flush=True)
                began = time.monotonic()
                results["metrics_cost"] = metrics_cost_skipped(backend) or scenarios.metrics_cost(ctx)
                results.setdefault("elapsed_s", {})["metrics_cost hipush-1w"] = round(time.monotonic() - began, 1)
                continue
            for label in run_order:
                if scenario == "sse_batch" and not label.startswith("hipush"):
                    continue  # a batch call is hipush's
                if label == "hipush-1w" and scenario not in profile["one_worker_scenarios"] \
                        and args.systems == ",".join(SYSTEMS):
                    continue  # the profile's default; naming the systems explicitly runs them all
                print(f"== {scenario}: {label}", flush=True)
                began = time.monotonic()
                if scenario == "parked":
                    results["parked"][label] = scenarios.parked(ctx, make_server(label))
                elif scenario == "unicast":
                    results["unicast"][label] = scenarios.unicast(ctx, make_server(label))
                elif scenario == "fanout":
                    results["fanout"][label] = {str(n): scenarios.fanout(ctx, make_server(label), n)
                                                for n in profile["fanout_sizes"]}
                elif scenario in ("sse_unicast", "sse_batch"):
                    results[SSE_RESULTS[scenario]][label] = scenarios.unicast(
                        ctx, make_server(label), "sse", profile["batch_size"] if scenario == "sse_batch" else 1)
                elif scenario == "sse_parked":
                    results["parked_sse"][label] = scenarios.parked(ctx, make_server(label), "sse")
                elif scenario == "sse_fanout":
                    results["fanout_sse"][label] = {str(n): scenarios.fanout(ctx, make_server(label), n, "sse")
                                                    for n in profile["fanout_sizes"]}
                elif scenario == "soak":
                    results["soak"][label] = scenarios.soak(ctx, make_server(label))
                results.setdefault("elapsed_s", {})[f"{scenario} {label}"] = round(time.monotonic() - began, 1)
        results["profiles"] = ctx.profiles
    except BaseException:
        failed = True
        traceback.print_exc()
        results["notes"].append("the run failed part-way; see the traceback printed by the run")
        if not isinstance(sys.exc_info()[1], Exception):
            raise
    finally:
        if backend is not None:
            if backend.raised_maxclients is not None:
                results["notes"].append(f"Redis maxclients was raised from {backend.raised_maxclients} for the run "
                                        "(hipush holds one Redis connection per parked poll) and restored after")
            backend.close()
        if cluster_backend is not None:
            cluster_backend.close()
        results["duration_s"] = round(time.monotonic() - started, 1)
        results["machine"]["loadavg_end"] = procstat.loadavg()
        results["notes"] += notes(results, profile)
        paths = report.write(results, args.out, name, with_charts=not args.no_charts)
        print()
        print(paths["markdown"].read_text())
        print(f"written: {paths['markdown']}, {paths['json']}" +
              "".join(f", {c}" for c in results.get("charts", [])), flush=True)
        if args.keep or failed:
            print(f"run directory kept: {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
    return 1 if failed else 0


def metrics_cost_skipped(backend):
    """Why the metrics_cost scenario cannot run, as its result, or None."""
    if backend is None:
        return {"skipped": "no hipush system in --systems (it runs on their Redis and database server)"}
    if systems.HIPUSH_ROOT != systems.ROOT:  # tests/support.Server, which it starts, runs this repository's tree
        return {"skipped": "it measures this repository's hipush only, not --hipush-root"}
    return None


def notes(results: dict, profile: dict) -> list:
    out = []
    load = results["machine"]["loadavg_start"][0]
    if load > 0.5:
        out.append(f"load average was {load} when the run began: other work shared the {results['machine']['cores']}"
                   " cores, so the absolute figures are noisy")
    for label, r in results.get("parked", {}).items():
        if r.get("skipped"):
            out.append(f"{label}: parked levels {r['skipped']} not run: above its parked-poll capacity "
                       f"({systems.HIPUSH_MAX_PARKED_PER_WORKER} per worker, HIPUSH_MAX_PARKED_POLLS)")
    for label, by_n in results.get("fanout", {}).items():
        for n, r in by_n.items():
            if "skipped" in r:
                out.append(f"{label}: fan-out to {n} not run: {r['skipped']}")
    for key, what in (("unicast", "unicast"), ("unicast_sse", "SSE unicast"),
                      ("unicast_batch", "/push/batch unicast over SSE")):
        for label, r in results.get(key, {}).items():
            out.append(f"{label} {what} ramp: {r.get('stop_reason')}")
    if all(lb in results["systems"] for lb in report.RATIO_OF):
        out.append(f"ratio column = {report.RATIO_OF[0]} ÷ {report.RATIO_OF[1]}: above 1 means hipush takes more "
                   "(time, memory, CPU) or, for delivered/s, delivers more")
    out.append("server CPU is % of one core (2 cores = 200 %); RSS per parked poll (or open stream) is the growth "
               "of the server's worker processes' RSS over the idle baseline, divided by N; hipush also spends "
               "Redis client memory per parked poll (its own row)")
    out.append("latency = receipt time in the subscriber process minus the message's scheduled send time "
               "(open loop), so it includes any lateness of the publisher")
    return out


if __name__ == "__main__":
    sys.exit(main())
