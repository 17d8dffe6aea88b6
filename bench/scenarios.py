"""The scenarios, each run against one freshly started server at a time.

parked   N idle long polls: held without error, server memory per parked poll, idle CPU.
unicast  K parked clients; one message at a time to each (round robin) at fixed rates, then an open-loop
         ramp until errors, loss or p99 > 200 ms: delivered/s, publish-to-receipt latency, loss.
fanout   one message to a topic (hipush) / channel (Nchan) with N parked subscribers: publish call
         latency and time until the last subscriber has it.
sse_unicast, sse_fanout   the same over SSE streams (hipush /comet/stream, Nchan EventSource).
sse_batch  unicast published 100 messages per /push/batch call (hipush only), received over SSE.
floor    the framework floor: hello-world Flask under the same gunicorn settings, requests/s (closed loop).
metrics_cost  worker CPU per delivered long-poll message with hipush's metrics counting and without, in
         alternating servers of 1 worker (bench/cpu_per_message.py, bench/metrics_off.py).
soak     mixed load for minutes (idle polls, unicast stream, periodic fan-out, clients dropping their
         connections and coming back): errors, lost messages, memory growth.
"""
import json
import math
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from . import agents, procstat
from .systems import ROOT
from .protocols import parse_content

LATENCY_LIMIT_MS = 200.0
SUBSCRIBERS_PER_PROCESS = 8000  # each is one socket: well inside the 20000 open-file limit


def percentile(sorted_values, q: float):
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, int(math.ceil(q / 100.0 * len(sorted_values))) - 1))
    return sorted_values[k]


def summary_ms(values) -> dict:
    values = sorted(values)
    if not values:
        return {"p50": None, "p99": None, "max": None}
    return {"p50": round(percentile(values, 50), 2), "p99": round(percentile(values, 99), 2),
            "max": round(values[-1], 2)}


def quantiles(values, points: int = 101) -> list:
    """`points` evenly spaced quantiles of the values (for the CDF chart)."""
    values = sorted(values)
    if not values:
        return []
    return [round(values[min(len(values) - 1, int(i * (len(values) - 1) / (points - 1)))], 2) for i in range(points)]


class Context:
    """What every scenario needs: the profile's sizes, the run's directory, hipush's registered clients."""

    def __init__(self, profile: dict, run_dir: Path, results_dir: Path, name: str, make_server, hipush_backend,
                 profile_hipush: bool = False, log=print, scenarios=("parked", "unicast", "fanout", "soak")):
        self.p = profile
        self.scenarios = scenarios
        self.run_dir = run_dir
        self.results_dir = results_dir
        self.name = name
        self.make_server = make_server
        self.backend = hipush_backend
        self.profile_hipush = profile_hipush
        self.log = log
        self.hipush = None  # {"app", "clients", "job_id"} once registered
        self.profiles = []

    # -------------------------------------------------------- subscribers of each system

    def ensure_hipush_clients(self, server, count: int) -> None:
        """Registers the run's clients, a job and the topics, once (through the running server's API)."""
        if self.hipush is not None:
            return
        app = self.backend.create_app()
        topics = [{"name": f"fan{n}", "from": 0, "to": n} for n in self.p["fanout_sizes"]
                  if {"fanout", "sse_fanout"} & set(self.scenarios) and n <= count]
        if "soak" in self.scenarios and self.p["soak_s"]:
            u, f = self.p["soak_unicast"], self.p["soak_fanout"]
            topics.append({"name": "soak", "from": u, "to": u + f})
        self.log(f"  registering {count} hipush clients and {len(topics)} topics ...")
        started = time.monotonic()
        done = agents.run_setup(server, {"app": app, "prefix": "bench", "count": count, "topics": topics},
                                self.run_dir)
        self.hipush = {"app": app, "clients": done["clients"], "job_id": done["job_id"]}
        self.log(f"  registered in {time.monotonic() - started:.1f}s; topic subscribers "
                 f"{done['topic_subscribers']}" + (f"; {done['errors']} retried calls: {done['errors_samples']}"
                                                   if done["errors"] else ""))

    def subscribers(self, server, start: int, count: int, channel: str = None, prefix: str = "c") -> list:
        """Subscriber specs: hipush clients [start, start+count); for Nchan one channel each (`prefix` + i),
        or all on `channel`."""
        if server.kind == "hipush":
            return [dict(c) for c in self.hipush["clients"][start:start + count]]
        if channel:
            return [{"channel": channel} for _ in range(count)]
        return [{"channel": f"{prefix}{i}"} for i in range(start, start + count)]

    def publisher_config(self, server) -> dict:
        if server.kind == "hipush":
            return {"app": self.hipush["app"], "job_id": self.hipush["job_id"]}
        return {}

    def wait_parked(self, server, n: int, timeout: float) -> tuple:
        """(parked count, seconds) once the server holds n parked polls, or what it holds at the timeout."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if server.parked(precise=False) >= n and server.parked() >= n:
                break
            time.sleep(0.5)
        return server.parked(), round(time.monotonic() - started, 2)

    def open_and_park(self, fleet, server, n: int) -> tuple:
        """Opens subscribers up to n in batches, each once most of the previous batch is parked: a burst of
        thousands of first polls at once would measure how the server survives a connection storm (its accept
        backlog overflowing), not how many polls it holds. (parked count, seconds to park all)."""
        started, batch = time.monotonic(), self.p["park_batch"]
        target = fleet.opened
        while target < n:
            target = min(n, target + batch)
            fleet.open(target)
            if target < n:
                self.wait_parked(server, target - batch // 2, 30 + batch / 50)
        parked, _ = self.wait_parked(server, n, 30 + n / 250)
        return parked, round(time.monotonic() - started, 2)


# ------------------------------------------------------------ parked polls

def parked(ctx: Context, server, transport: str = "poll") -> dict:
    """Subscribers held open at each level (transport "sse": open streams instead of parked polls): the server's
    memory per subscriber and its idle CPU."""
    wanted = ctx.p["parked_levels" if transport == "poll" else "sse_parked_levels"]
    levels = [n for n in wanted if n <= server.max_parked]
    skipped = [n for n in wanted if n > server.max_parked]
    if not levels:
        return {"levels": [], "skipped": skipped}
    top = max(levels)
    if server.kind == "hipush":
        server.backend.ensure_maxclients(top)
    server.start()
    fleet = None
    try:
        if server.kind == "hipush":
            ctx.ensure_hipush_clients(server, ctx.p["clients_needed"])
        subs = ctx.subscribers(server, 0, top, prefix="p")
        fleet = agents.SubscriberFleet(server, subs, math.ceil(top / SUBSCRIBERS_PER_PROCESS), ctx.run_dir,
                                       open_rate=ctx.p["open_rate"], extra={"transport": transport})
        time.sleep(1.5)
        base_rss = procstat.total_rss_kb(server.worker_pids())
        base_redis = server.backend.clients_memory_kb() if server.kind == "hipush" else None
        rows, errors_before = [], 0
        for n in levels:
            parked_now, park_s = ctx.open_and_park(fleet, server, n)
            time.sleep(1.0)
            rss = procstat.total_rss_kb(server.worker_pids())
            redis_kb = server.backend.clients_memory_kb() if server.kind == "hipush" else None
            answers_before = fleet.status()["answers"]
            server_cpu, gen_cpu = procstat.CpuMeter(server.pids()), procstat.CpuMeter(fleet.pids())
            time.sleep(ctx.p["parked_hold_s"])
            idle_cpu, gen_idle_cpu = server_cpu.percent(), gen_cpu.percent()
            status = fleet.status()
            parked_end = server.parked()
            row = {
                "n": n, "server_parked": parked_end, "client_held": status["held"],
                "errors": status["errors"] - errors_before, "error_samples": status["error_samples"],
                "park_s": park_s, "rss_kb": rss, "rss_delta_kb": rss - base_rss,
                "kb_per_poll": round((rss - base_rss) / n, 1), "idle_cpu_pct": idle_cpu,
                "loadgen_cpu_pct": gen_idle_cpu, "loadgen_rss_kb": status["rss_kb"],
                "repolls_in_idle_window": status["answers"] - answers_before,  # polls that reached their timeout
                "held_ok": parked_end >= n and status["errors"] - errors_before == 0,
            }
            if redis_kb is not None:
                row["redis_clients_kb"] = redis_kb
                row["redis_kb_per_poll"] = round((redis_kb - base_redis) / n, 1)
            errors_before = status["errors"]
            rows.append(row)
            ctx.log(f"  {server.label} {transport} parked {n}: held {parked_end} (client side {status['held']}), "
                    f"errors {row['errors']}, {row['kb_per_poll']} KB/poll"
                    + (f" + Redis {row['redis_kb_per_poll']} KB/poll" if redis_kb is not None else "")
                    + f", idle CPU {idle_cpu}%, parked in {park_s}s")
        return {"baseline_rss_kb": base_rss, "levels": rows, "skipped": skipped}
    finally:
        if fleet:
            fleet.stop()
        server.stop()


# ------------------------------------------------------------ unicast

def unicast(ctx: Context, server, transport: str = "poll", batch: int = 1) -> dict:
    """transport "sse": subscribers hold streams; batch > 1: published that many per call (hipush's /push/batch)."""
    k = ctx.p["unicast_clients"]
    rates, ramp = {"poll": ("rates", "ramp"), "sse": ("sse_rates", "sse_ramp")}[transport]
    if batch > 1:
        rates, ramp = "batch_rates", "batch_ramp"
    server.start()
    fleet = None
    try:
        if server.kind == "hipush":
            ctx.ensure_hipush_clients(server, ctx.p["clients_needed"])
        subs = ctx.subscribers(server, 0, k, prefix="u")
        targets = [s["client_id"] for s in subs] if server.kind == "hipush" else [s["channel"] for s in subs]
        fleet = agents.SubscriberFleet(server, subs, ctx.p["subscriber_procs"], ctx.run_dir,
                                       open_rate=ctx.p["open_rate"], extra={"transport": transport})
        parked_now, park_s = ctx.open_and_park(fleet, server, k)
        ctx.log(f"  {server.label}: {parked_now} of {k} clients parked in {park_s}s")
        steps = [(r, "fixed", ctx.p["step_s"]) for r in ctx.p[rates]] + \
                [(r, "ramp", ctx.p["ramp_step_s"]) for r in ctx.p[ramp]]
        results, seen, seq_base = [], Receipts(), 0
        stop_reason = f"every rate kept, up to the profile's highest ({steps[-1][0]}/s)" if steps else "no steps"
        sub_errors_before = fleet.status()["errors"]
        for number, (rate, kind, duration) in enumerate(steps):
            step = _unicast_step(ctx, server, fleet, targets, f"s{number}", rate, kind, duration, seq_base, seen,
                                 sub_errors_before, batch)
            step["tag"] = f"s{number}"
            sub_errors_before += step["subscriber_errors"]
            seq_base += step["planned"]
            results.append(step)
            ctx.log(f"  {server.label} {kind} {rate}/s: delivered {step['delivered_per_s']}/s, "
                    f"p50 {step['latency_ms']['p50']} p99 {step['latency_ms']['p99']} "
                    f"max {step['latency_ms']['max']} ms, lost {step['lost']}, errors "
                    f"{step['publish_errors'] + step['subscriber_errors']}, sent at {step['achieved_rate']}/s "
                    f"(publisher CPU {step['publisher_cpu_pct']}%, server CPU {step['server_cpu_pct']}%)")
            # the ramp goes on past lost messages (reported, and no such rate counts as "ok"): it measures
            # how fast a system delivers, until errors, p99 > 200 ms or a rate it cannot take
            if kind == "ramp" and not step["keeps_up"]:
                stop_reason = f"stopped at {rate}/s: {step['why_not_ok']}"
                break
            if kind == "fixed" and rate == max(ctx.p[rates]) and not step["keeps_up"] and ctx.p[ramp]:
                stop_reason = f"no ramp: already {rate}/s was beyond it ({step['why_not_ok']})"
                break
        if any(step["lost"] for step in results):  # late arrivals count: the loss is what never arrived by now
            time.sleep(ctx.p["drain_s"])
        seen.collect(fleet)
        for step in results:
            step["lost_final"] = step["published_ok"] - seen.unique_by_tag[step["tag"]]
        ok_rates = [s["rate"] for s in results if s["ok"]]
        return {"clients": k, "park_s": park_s, "steps": results, "stop_reason": stop_reason,
                "max_rate_ok": max(ok_rates) if ok_rates else None}
    finally:
        if fleet:
            fleet.stop()
        server.stop()


class Receipts:
    """Every message the subscribers got: content -> [(subscriber index, receipt unix ns), ...]."""

    def __init__(self):
        self.by_content = {}
        self.unique_by_tag = Counter()

    def collect(self, fleet) -> None:
        for idx, content, ns in fleet.receipts():
            receipts = self.by_content.get(content)
            if receipts is None:
                self.by_content[content] = [(idx, ns)]
                self.unique_by_tag[content.split(".", 1)[0]] += 1
            else:
                receipts.append((idx, ns))

    def of_tag(self, tag: str):
        prefix = tag + "."
        return ((c, r) for c, r in self.by_content.items() if c.startswith(prefix))


def _unicast_step(ctx, server, fleet, targets, tag, rate, kind, duration, seq_base, seen, sub_errors_before,
                  batch=1):
    # a batch call costs the generator far less per message than a call per message
    procs = max(1, math.ceil(rate / (ctx.p["rate_per_publisher"] * (4 if batch > 1 else 1))))
    config = {"rate": rate, "duration": duration, "targets": targets, "tag": tag, "seq_base": seq_base,
              "batch": batch,
              "concurrency": ctx.p["publish_concurrency"], "max_seconds": duration + ctx.p["step_overrun_s"],
              **ctx.publisher_config(server)}
    server_cpu = procstat.CpuMeter(server.pids())
    sub_cpu_before = fleet.status()["cpu_s"]
    started = time.monotonic()
    profilers = _start_profilers(ctx, server, rate, duration) if kind == "fixed" and rate == max(ctx.p["rates"]) \
        else []
    pub = agents.run_publishers(server, config, procs, ctx.run_dir)
    ok = {seq for seq, status, _ in pub["sent"] if status == 200}
    deadline = time.monotonic() + ctx.p["drain_s"]
    while True:
        seen.collect(fleet)
        if seen.unique_by_tag[tag] >= len(ok) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for profiler in profilers:
        profiler.wait(30)
    elapsed = time.monotonic() - started
    status = fleet.status()
    latencies, duplicates, misrouted, last_ns = [], 0, 0, 0
    for content, receipts in seen.of_tag(tag):
        _, seq, scheduled_ns = parse_content(content)
        first = min(ns for _, ns in receipts)
        latencies.append((first - scheduled_ns) / 1e6)
        last_ns = max(last_ns, first)
        duplicates += len(receipts) - 1
        misrouted += sum(1 for idx, _ in receipts if idx != (seq - seq_base) % len(targets))
    call_ms = [us / 1000 for _, status_, us in pub["sent"] if status_ == 200]
    span_s = (last_ns - pub["start_ns"]) / 1e9 if last_ns else None
    lat = summary_ms(latencies)
    step = {
        "rate": rate, "kind": kind, "duration_s": duration, "planned": pub["planned"], "published_ok": len(ok),
        "unsent": pub["unsent"], "publish_errors": pub["planned"] - pub["unsent"] - len(ok),
        "publish_error_samples": pub["error_samples"],
        "received": len(latencies), "lost": len(ok) - len(latencies), "duplicates": duplicates,
        "misrouted": misrouted, "subscriber_errors": status["errors"] - sub_errors_before,
        "subscriber_error_samples": status["error_samples"],
        "delivered_per_s": round(len(latencies) / span_s, 1) if span_s else 0.0,
        "achieved_rate": round((pub["planned"] - pub["unsent"]) / pub["send_window_s"], 1)
        if pub["send_window_s"] > 0 else None,
        "max_send_lag_ms": pub["max_lag_ms"], "latency_ms": lat, "publish_call_ms": summary_ms(call_ms),
        "latency_quantiles_ms": quantiles(latencies, 21),
        "publisher_procs": procs, "publisher_cpu_pct": round(100 * pub["cpu_s"] / max(1e-6, elapsed), 1),
        "subscriber_cpu_pct": round(100 * (status["cpu_s"] - sub_cpu_before) / max(1e-6, elapsed), 1),
        "server_cpu_pct": server_cpu.percent(),
        "profiles": [str(p.args[p.args.index("-o") + 1]) for p in profilers],
    }
    reasons = []
    if step["publish_errors"] or step["subscriber_errors"]:
        reasons.append(f"{step['publish_errors']} publish and {step['subscriber_errors']} subscriber errors")
    if lat["p99"] is None or lat["p99"] > LATENCY_LIMIT_MS:
        reasons.append(f"p99 {lat['p99']} ms > {LATENCY_LIMIT_MS:.0f} ms")
    if step["unsent"]:
        reasons.append(f"{step['unsent']} messages unsent: the server's answers held the publisher back")
    elif step["achieved_rate"] is not None and step["achieved_rate"] < 0.9 * rate:
        reasons.append(f"the publisher sent only {step['achieved_rate']}/s (the server's answers held it back"
                       f" or the generator is CPU-bound: {step['publisher_cpu_pct']}% CPU over {procs} process(es))")
    step["keeps_up"] = not reasons
    if step["lost"]:
        reasons.append(f"{step['lost']} not delivered within {ctx.p['drain_s']}s of the last publish")
    step["ok"] = not reasons
    step["why_not_ok"] = "; ".join(reasons)
    ctx.profiles += step["profiles"]
    return step


def _start_profilers(ctx, server, rate, duration) -> list:
    """py-spy on each hipush worker for the step (with --profile)."""
    if not ctx.profile_hipush or server.kind != "hipush":
        return []
    py_spy = Path(sys.executable).parent / "py-spy"
    out = []
    for pid in server.worker_pids():
        path = ctx.results_dir / f"{ctx.name}-profile-{server.label}-{rate}-{pid}.svg"
        out.append(subprocess.Popen([str(py_spy), "record", "--nonblocking", "-o", str(path), "--pid", str(pid),
                                     "--duration", str(int(duration) + 1)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return out


# ------------------------------------------------------------ fan-out

def fanout(ctx: Context, server, n: int, transport: str = "poll") -> dict:
    if n > server.max_parked:
        return {"n": n, "skipped": f"above {server.max_parked} parked polls per server (HIPUSH_MAX_PARKED_POLLS)"}
    if server.kind == "hipush":
        server.backend.ensure_maxclients(n)
    server.start()
    fleet = None
    try:
        if server.kind == "hipush":
            ctx.ensure_hipush_clients(server, ctx.p["clients_needed"])
        target = f"fan{n}"
        subs = ctx.subscribers(server, 0, n, channel=target)
        fleet = agents.SubscriberFleet(server, subs, 1 if n < 2000 else ctx.p["subscriber_procs"], ctx.run_dir,
                                       open_rate=ctx.p["open_rate"], extra={"transport": transport})
        parked_now, park_s = ctx.open_and_park(fleet, server, n)
        rounds, seen = [], Receipts()
        for number in range(ctx.p["fanout_rounds"]):
            parked_now, _ = ctx.wait_parked(server, n, 30)
            time.sleep(0.5)
            seen.collect(fleet)
            server_cpu = procstat.CpuMeter(server.pids())
            pub = agents.run_fanout_publish(server, {"target": target, "tag": f"f{n}r{number}", "seq": number,
                                                     **ctx.publisher_config(server)}, ctx.run_dir)
            deadline = time.monotonic() + ctx.p["fanout_wait_s"]
            content = pub.get("content")
            while time.monotonic() < deadline:
                seen.collect(fleet)
                if len({idx for idx, _ in seen.by_content.get(content, [])}) >= n:
                    break
                time.sleep(0.1)
            firsts = {}
            for idx, ns in seen.by_content.get(content, []):
                firsts[idx] = min(ns, firsts.get(idx, ns))
            offsets = sorted((ns - pub["started_ns"]) / 1e6 for ns in firsts.values())
            row = {
                "round": number, "parked_before": parked_now, "status": pub.get("status"),
                "error": pub.get("error"), "publish_call_ms": round((pub["returned_ns"] - pub["started_ns"]) / 1e6, 2),
                "save_ms": round(pub.get("save_ms", 0.0), 2), "multi_ms": round(pub.get("publish_ms", 0.0), 2),
                "received": len(offsets), "missing": n - len(offsets),
                "first_ms": round(offsets[0], 2) if offsets else None,
                "p50_ms": round(percentile(offsets, 50), 2) if offsets else None,
                "p99_ms": round(percentile(offsets, 99), 2) if offsets else None,
                "last_ms": round(offsets[-1], 2) if offsets else None,
                "server_cpu_pct": server_cpu.percent(), "cdf_ms": quantiles(offsets),
            }
            rounds.append(row)
            ctx.log(f"  {server.label} fan-out {n}: publish call {row['publish_call_ms']} ms, first "
                    f"{row['first_ms']} ms, last {row['last_ms']} ms, received {row['received']}/{n}")
        status = fleet.status()
        completed = [r for r in rounds if r["missing"] == 0]
        median = sorted(completed or rounds, key=lambda r: r["last_ms"] or 1e12)[(len(completed or rounds) - 1) // 2]
        return {"n": n, "park_s": park_s, "rounds": rounds, "median_round": median["round"],
                "subscriber_errors": status["errors"], "subscriber_error_samples": status["error_samples"]}
    finally:
        if fleet:
            fleet.stop()
        server.stop()


# ------------------------------------------------------------ the framework floor

def floor(ctx: Context, server) -> dict:
    """Requests/s of hello-world Flask under gunicorn: `floor_connections` keep-alive connections over the
    subscriber processes, each asking again as soon as answered, for `floor_s` seconds (what `wrk -c` does)."""
    server.start()
    try:
        procs, connections = ctx.p["subscriber_procs"], ctx.p["floor_connections"]
        server_cpu = procstat.CpuMeter(server.pids())
        runs = agents.run_hammers(server, {"path": "/", "duration": ctx.p["floor_s"]}, procs, connections,
                                  ctx.run_dir)
        seconds = max(r["seconds"] for r in runs)
        result = {"requests_per_s": round(sum(r["answers"] for r in runs) / seconds, 1),
                  "connections": connections, "procs": procs, "seconds": round(seconds, 1),
                  "server_cpu_pct": server_cpu.percent(),
                  "loadgen_cpu_pct": round(100 * sum(r["cpu_s"] for r in runs) / seconds, 1),
                  "errors": sum(r["errors"] for r in runs),
                  "error_samples": [e for r in runs for e in r["error_samples"]][:10]}
        ctx.log(f"  {server.label}: {result['requests_per_s']} requests/s over {connections} connections "
                f"(server CPU {result['server_cpu_pct']}%, load generator CPU {result['loadgen_cpu_pct']}%)")
        return result
    finally:
        server.stop()


# ------------------------------------------------------------ what the metrics cost

METRICS_COST_LIMIT_PCT = 3.0  # issue 18: the metrics may lower the unicast ceiling by this much at most
METRICS_OFF_CONFIG = str(Path(__file__).resolve().parent / "metrics_off.py")


def metrics_cost(ctx: Context) -> dict:
    """Worker CPU per delivered long-poll message with hipush's metrics counting (on) and with every counting
    function a no-op (off: bench/metrics_off.py), by bench/cpu_per_message.measure: 1 worker, clients in lock
    step, a fresh server for each measure. The servers alternate on, off, off, on, on, off, ... so that a drift
    in the machine's load weighs on both alike. CPU time, not a rate: the rates move with the machine's load.
    Beside it, the counting alone timed in-process (bench/metrics_counting.py): precise where the A/B is not,
    and the figure the limit is judged on."""
    from . import cpu_per_message

    p = ctx.p
    redis_url, database_url = ctx.backend.cpu_bench_urls()  # its own: measure() flushes and drops them
    per_server = {"on": [], "off": []}  # µs per message of each run, one list per server
    for pair in range(p["metrics_cost_pairs"]):
        for setting in ("on", "off") if pair % 2 == 0 else ("off", "on"):
            runs = cpu_per_message.measure(redis_url, database_url, METRICS_OFF_CONFIG if setting == "off" else "",
                                           runs=p["metrics_cost_runs"], messages=p["metrics_cost_messages"],
                                           warmup=p["metrics_cost_warmup"], clients=p["metrics_cost_clients"])
            per_server[setting].append([round(run.us_per_message, 1) for run in runs])
            ctx.log(f"  metrics {setting}: " + ", ".join(f"{us:.0f}" for us in per_server[setting][-1]) +
                    " µs/message")
    if redis_url:
        import redis
        redis.Redis.from_url(redis_url).flushdb()  # left empty, as HipushBackend.close leaves the run's
    figures = {setting: _us_summary([us for server in servers for us in server])
               for setting, servers in per_server.items()}
    on, off = figures["on"], figures["off"]
    counting = json.loads(subprocess.run([sys.executable, "-m", "bench.metrics_counting"], cwd=ROOT, check=True,
                                         capture_output=True, text=True).stdout)
    result = {"workers": 1, "clients": p["metrics_cost_clients"], "pairs": p["metrics_cost_pairs"],
              "runs_per_server": p["metrics_cost_runs"], "messages_per_run": p["metrics_cost_messages"],
              "redis_url": redis_url or "embedded", "database_url": database_url or "SQLite",
              "us_per_message": per_server, **figures,
              "cost_pct": round(100 * (on["median"] / off["median"] - 1), 1),
              "cost_pct_of_means": round(100 * (on["mean"] / off["mean"] - 1), 1),
              "ceiling_drop_pct": round(100 * (1 - off["median"] / on["median"]), 1),
              "pair_cost_pct": [round(100 * (_us_summary(a)["median"] / _us_summary(b)["median"] - 1), 1)
                                for a, b in zip(per_server["on"], per_server["off"])],
              "limit_pct": METRICS_COST_LIMIT_PCT, "counting_us_per_message": counting["us_per_delivery"],
              "counting_pct": round(100 * counting["us_per_delivery"] / off["median"], 2)}
    result["within_limit"] = result["counting_pct"] <= METRICS_COST_LIMIT_PCT
    pairs = result["pair_cost_pct"]  # their spread says how far the figure can be trusted on this machine
    result["pair_cost_mean_pct"] = round(statistics.mean(pairs), 1)
    result["pair_cost_sem_pct"] = round(statistics.stdev(pairs) / math.sqrt(len(pairs)), 1) if len(pairs) > 1 else None
    ctx.log(f"  metrics on {on['median']:.0f} µs/message, off {off['median']:.0f} (medians of {on['runs']} runs "
            f"each): cost {result['cost_pct']:+.1f} %, ceiling drop {result['ceiling_drop_pct']:.1f} % "
            f"(limit {METRICS_COST_LIMIT_PCT:.0f} %); the counting alone {result['counting_us_per_message']} µs/message "
            f"= {result['counting_pct']} %")
    return result


def _us_summary(values) -> dict:
    return {"mean": round(statistics.mean(values), 1), "median": round(statistics.median(values), 1),
            "runs": len(values)}


# ------------------------------------------------------------ soak

def soak(ctx: Context, server) -> dict:
    """Idle parked clients, a unicast stream to others, a fan-out every few seconds to a third group, and 1 %
    of the open connections dropped every second (those clients come back, following their stream)."""
    p = ctx.p
    u, f, idle = p["soak_unicast"], p["soak_fanout"], p["soak_idle"]
    total = u + f + idle
    if server.kind == "hipush":
        server.backend.ensure_maxclients(total)
    server.start()
    fleet = None
    stop = threading.Event()
    threads = []
    try:
        if server.kind == "hipush":
            ctx.ensure_hipush_clients(server, p["clients_needed"])
            subs = ctx.subscribers(server, 0, total)  # [0, u) unicast, [u, u+f) topic "soak", the rest idle
            targets = [s["client_id"] for s in subs[:u]]
            fan_target = "soak"
        else:
            subs = ctx.subscribers(server, 0, u, prefix="k") + ctx.subscribers(server, 0, f, channel="soakfan") + \
                ctx.subscribers(server, 0, idle, prefix="i")
            targets = [s["channel"] for s in subs[:u]]
            fan_target = "soakfan"
        fleet = agents.SubscriberFleet(server, subs, p["subscriber_procs"], ctx.run_dir, open_rate=p["open_rate"])
        parked_now, park_s = ctx.open_and_park(fleet, server, total)
        ctx.log(f"  {server.label} soak: {parked_now} of {total} parked in {park_s}s; running {p['soak_s']:.0f}s")
        fleet.churn(p["soak_churn"])
        chunks, fanouts, problems = [], [], []  # unicast publisher runs, fan-out publishes, generator failures
        started = time.monotonic()

        def unicast_loop():  # the stream, in runs of at most a minute (each a bounded publisher process)
            number = 0
            while not stop.is_set():
                seconds = min(60.0, p["soak_s"] - (time.monotonic() - started))
                if seconds < 1:
                    return
                try:
                    chunks.append((f"k{number}", agents.run_publishers(server, {
                        "rate": p["soak_rate"], "duration": seconds, "targets": targets, "tag": f"k{number}",
                        "concurrency": p["publish_concurrency"], "max_seconds": seconds + 10,
                        **ctx.publisher_config(server)}, 1, ctx.run_dir)))
                except Exception as exc:  # noqa: BLE001
                    problems.append(f"unicast run {number}: {exc!r}")
                number += 1

        def fanout_loop():
            while not stop.wait(p["soak_fanout_every_s"]):
                try:
                    fanouts.append(agents.run_fanout_publish(server, {
                        "target": fan_target, "tag": f"g{len(fanouts)}", "seq": len(fanouts),
                        **ctx.publisher_config(server)}, ctx.run_dir))
                except Exception as exc:  # noqa: BLE001
                    problems.append(f"fan-out {len(fanouts)}: {exc!r}")

        threads = [threading.Thread(target=loop, daemon=True) for loop in (unicast_loop, fanout_loop)]
        for thread in threads:
            thread.start()
        seen, samples = Receipts(), []
        meter = procstat.CpuMeter(server.pids())
        while time.monotonic() - started < p["soak_s"]:
            time.sleep(min(p["soak_sample_s"], max(0.1, p["soak_s"] - (time.monotonic() - started))))
            seen.collect(fleet)
            status = fleet.status()
            sample = {"t": round(time.monotonic() - started, 1), "rss_kb": procstat.total_rss_kb(server.worker_pids()),
                      "server_cpu_pct": meter.percent(), "errors": status["errors"], "churns": status["churns"],
                      "received": status["received"]}
            meter.start()
            if server.kind == "hipush":
                sample["redis_used_kb"] = server.backend.used_memory_kb()
            samples.append(sample)
        stop.set()
        for thread in threads:
            thread.join(timeout=180)
        fleet.churn(0.0)
        deadline = time.monotonic() + p["drain_s"] + 10
        expected = sum(sum(1 for _, st, _ in res["sent"] if st == 200) for _, res in chunks)
        while time.monotonic() < deadline:  # late messages: until everything arrived or the drain ends
            seen.collect(fleet)
            if sum(seen.unique_by_tag[tag] for tag, _ in chunks) >= expected:
                break
            time.sleep(0.5)
        time.sleep(1.0)
        seen.collect(fleet)
        status = fleet.status()
        unicast_received = sum(seen.unique_by_tag[tag] for tag, _ in chunks)
        fan_ok = [pub for pub in fanouts if pub.get("status") == 200]
        fan_received = sum(len({i for i, _ in seen.by_content.get(pub["content"], [])}) for pub in fan_ok)
        warm = [s for s in samples if s["t"] >= min(60.0, p["soak_s"] / 4)] or samples
        return {
            "seconds": p["soak_s"], "subscribers": total, "unicast_clients": u, "fanout_subscribers": f,
            "idle_subscribers": idle, "churn_per_s": p["soak_churn"], "unicast_rate": p["soak_rate"],
            "unicast_planned": sum(res["planned"] for _, res in chunks), "unicast_published": expected,
            "unicast_unsent": sum(res["unsent"] for _, res in chunks),
            "unicast_publish_errors": sum(res["planned"] - res["unsent"] - sum(1 for _, st, _ in res["sent"]
                                                                                if st == 200) for _, res in chunks),
            "unicast_received": unicast_received, "unicast_lost": expected - unicast_received,
            "unicast_duplicates": sum(len(r) - 1 for tag, _ in chunks for _, r in seen.of_tag(tag)),
            "unicast_latency_ms": summary_ms([(min(ns for _, ns in r) - parse_content(c)[2]) / 1e6
                                              for tag, _ in chunks for c, r in seen.of_tag(tag)]),
            "fanouts": len(fanouts), "fanout_publish_errors": len(fanouts) - len(fan_ok),
            "fanout_expected": f * len(fan_ok), "fanout_received": fan_received,
            "fanout_lost": f * len(fan_ok) - fan_received,
            "fanout_last_ms": summary_ms([(max(ns for _, ns in seen.by_content.get(pub["content"], [(0, 0)])) -
                                           pub["started_ns"]) / 1e6 for pub in fan_ok
                                          if pub["content"] in seen.by_content]),
            "subscriber_errors": status["errors"], "subscriber_error_samples": status["error_samples"],
            "generator_problems": problems + [e for _, res in chunks for e in res["error_samples"]][:10],
            "churns": status["churns"],
            "rss_start_kb": warm[0]["rss_kb"], "rss_end_kb": samples[-1]["rss_kb"],
            "rss_growth_kb": samples[-1]["rss_kb"] - warm[0]["rss_kb"],
            "rss_growth_pct": round(100.0 * (samples[-1]["rss_kb"] - warm[0]["rss_kb"]) / max(1, warm[0]["rss_kb"]), 1),
            "samples": samples,
        }
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        if fleet:
            fleet.stop()
        server.stop()
