"""Results: a markdown table (hipush vs Nchan, with the ratio), the JSON of every figure, and PNG charts."""
import json
from pathlib import Path

RATIO_OF = ("hipush-2w", "nchan-2w")  # the table's ratio column: hipush with 2 workers over Nchan with 2 workers


def _fmt(value, unit=""):
    if value is None:
        return "–"
    if isinstance(value, float):
        value = f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    elif isinstance(value, int):
        value = f"{value:,}"
    return f"{value}{unit}"


def _ratio(a, b):
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or isinstance(a, bool):
        return "–"
    if b == 0:
        return "–" if a == 0 else "∞"
    return f"×{a / b:.2f}"


def rows(results: dict) -> list:
    """(section, metric, {system label: value}, unit) for the table."""
    out = []
    out += _parked_rows("parked polls", "parked poll", results.get("parked", {}))
    out += _parked_rows("open SSE streams", "open stream", results.get("parked_sse", {}))
    if results.get("floor"):
        floor = results["floor"]
        out.append(("framework floor", f"hello-world Flask, 2 gevent workers: requests/s ({floor['connections']} "
                    f"connections, closed loop)", {lb: floor["requests_per_s"] for lb in results["systems"]
                                                   if lb.startswith("hipush")}, ""))
    out += _unicast_rows("unicast", results.get("unicast", {}))
    out += _unicast_rows("unicast over SSE", results.get("unicast_sse", {}))
    out += _unicast_rows("unicast via /push/batch (100 per call), over SSE", results.get("unicast_batch", {}))
    out += _fanout_rows("fan-out", results.get("fanout", {}))
    out += _fanout_rows("fan-out over SSE", results.get("fanout_sse", {}))
    soak = results.get("soak", {})
    if soak:
        out.append(("soak", "duration", {lb: r.get("seconds") for lb, r in soak.items()}, " s"))
        out.append(("soak", "errors (publish + subscriber)",
                    {lb: r["unicast_publish_errors"] + r["fanout_publish_errors"] + r["subscriber_errors"]
                     for lb, r in soak.items()}, ""))
        out.append(("soak", "unicast messages planned (rate × time)", {lb: r["unicast_planned"] for lb, r in soak.items()},
                    ""))
        out.append(("soak", "unicast messages the publisher could not send in time",
                    {lb: r["unicast_unsent"] for lb, r in soak.items()}, ""))
        out.append(("soak", "lost messages (unicast + fan-out deliveries)",
                    {lb: r["unicast_lost"] + r["fanout_lost"] for lb, r in soak.items()}, ""))
        out.append(("soak", "messages delivered (unicast + fan-out)",
                    {lb: r["unicast_received"] + r["fanout_received"] for lb, r in soak.items()}, ""))
        out.append(("soak", "unicast publish-to-receipt p99",
                    {lb: r["unicast_latency_ms"]["p99"] for lb, r in soak.items()}, " ms"))
        out.append(("soak", "server RSS growth after warm-up",
                    {lb: r["rss_growth_kb"] for lb, r in soak.items()}, " KB"))
    return out


def _parked_rows(section: str, what: str, parked: dict) -> list:
    """Rows of a parked scenario: `what` is one subscriber held open (a parked poll, an open stream)."""
    out = []
    levels = sorted({row["n"] for r in parked.values() for row in r.get("levels", [])} |
                    {n for r in parked.values() for n in r.get("skipped", [])})
    for n in levels:
        def level(label, key, n=n):
            row = next((x for x in parked.get(label, {}).get("levels", []) if x["n"] == n), None)
            return None if row is None else row.get(key)
        out.append((section, f"N={n:,}: held by the server (client-side errors)",
                    {lb: (f"{level(lb, 'server_parked'):,} ({level(lb, 'errors')})" if level(lb, "server_parked")
                          is not None else "n/a") for lb in parked}, ""))
        out.append((section, f"N={n:,}: server RSS per {what}", {lb: level(lb, "kb_per_poll") for lb in parked},
                    " KB"))
        if any(level(lb, "redis_kb_per_poll") is not None for lb in parked):
            out.append((section, f"N={n:,}: + Redis client memory per {what}",
                        {lb: level(lb, "redis_kb_per_poll") for lb in parked}, " KB"))
        out.append((section, f"N={n:,}: idle server CPU", {lb: level(lb, "idle_cpu_pct") for lb in parked}, " %"))
        out.append((section, f"N={n:,}: time to open all", {lb: level(lb, "park_s") for lb in parked}, " s"))
        out.append((section, f"N={n:,}: load generator CPU while idle",
                    {lb: level(lb, "loadgen_cpu_pct") for lb in parked}, " %"))
    return out


def _unicast_rows(section: str, unicast: dict) -> list:
    out = []
    steps = []
    for r in unicast.values():
        for s in r.get("steps", []):
            if s["kind"] == "fixed" and s["rate"] not in steps:
                steps.append(s["rate"])
    for rate in steps:
        def step(label, key, sub=None, rate=rate):
            s = next((x for x in unicast.get(label, {}).get("steps", []) if x["rate"] == rate and x["kind"] == "fixed"),
                     None)
            if s is None:
                return None
            return s[key][sub] if sub else s[key]
        out.append((section, f"{rate:,} msg/s: delivered/s", {lb: step(lb, "delivered_per_s") for lb in unicast}, ""))
        for q in ("p50", "p99", "max"):
            out.append((section, f"{rate:,} msg/s: publish-to-receipt {q}",
                        {lb: step(lb, "latency_ms", q) for lb in unicast}, " ms"))
        out.append((section, f"{rate:,} msg/s: lost (never received)",
                    {lb: step(lb, "lost_final") for lb in unicast}, ""))
        out.append((section, f"{rate:,} msg/s: errors (publish + subscriber)",
                    {lb: (None if step(lb, "publish_errors") is None else
                          step(lb, "publish_errors") + step(lb, "subscriber_errors")) for lb in unicast}, ""))
        out.append((section, f"{rate:,} msg/s: publish call p50",
                    {lb: step(lb, "publish_call_ms", "p50") for lb in unicast}, " ms"))
        out.append((section, f"{rate:,} msg/s: server CPU", {lb: step(lb, "server_cpu_pct") for lb in unicast},
                    " %"))
        out.append((section, f"{rate:,} msg/s: load generator CPU (publisher + subscribers)",
                    {lb: (None if step(lb, "publisher_cpu_pct") is None else
                          round(step(lb, "publisher_cpu_pct") + step(lb, "subscriber_cpu_pct"), 1)) for lb in unicast},
                    " %"))
    if unicast:
        out.append((section, "highest rate with no error, no loss, p99 ≤ 200 ms",
                    {lb: r.get("max_rate_ok") for lb, r in unicast.items()}, " msg/s"))
        out.append((section, "most delivered/s in any step (its ceiling when saturated)",
                    {lb: max((s["delivered_per_s"] for s in r.get("steps", [])), default=None)
                     for lb, r in unicast.items()}, ""))
    return out


def _fanout_rows(section: str, fan: dict) -> list:
    out = []
    sizes = sorted({int(n) for r in fan.values() for n in r})
    for n in sizes:
        def median(label, key, n=n):
            r = fan.get(label, {}).get(str(n))
            if not r or "rounds" not in r:
                return None
            return next(x for x in r["rounds"] if x["round"] == r["median_round"])[key]
        out.append((section, f"{n:,} subscribers: publish call", {lb: median(lb, "publish_call_ms") for lb in fan},
                    " ms"))
        out.append((section, f"{n:,} subscribers: first subscriber has it",
                    {lb: median(lb, "first_ms") for lb in fan}, " ms"))
        out.append((section, f"{n:,} subscribers: last subscriber has it",
                    {lb: median(lb, "last_ms") for lb in fan}, " ms"))
        out.append((section, f"{n:,} subscribers: missing after the wait",
                    {lb: median(lb, "missing") for lb in fan}, ""))
    return out


def markdown(results: dict) -> str:
    labels = results["systems"]
    ratio = all(lb in labels for lb in RATIO_OF)
    head = ["", "metric", *labels] + ([f"{RATIO_OF[0]} / {RATIO_OF[1]}"] if ratio else [])
    machine, versions = results["machine"], results["versions"]
    about = []
    if any(lb.startswith("hipush") for lb in labels):
        about.append(f"hipush: gunicorn gevent workers (`-w N`, N = 1 or 2), Redis {versions.get('redis_server')} "
                     f"({versions.get('redis_url')}), database {versions.get('database_server')}.")
    if any(lb.startswith("nchan") for lb in labels):
        about.append(f"Nchan {versions.get('nchan')} on nginx {versions.get('nginx')}, `worker_processes 2`.")
    lines = [f"# hipush vs Nchan — {results['name']}", "",
             f"{results['started_at']}, {results['duration_s']:.0f} s. Machine: {machine['cores']} cores, "
             f"{machine['mem_total_gb']} GB, open files {machine['open_files']}, load average at start "
             f"{machine['loadavg_start']}. " + " ".join(about) +
             " Load generator: separate gevent processes over raw sockets on loopback.", ""]
    table = rows(results)
    if table:
        lines += ["| " + " | ".join(head[1:]) + " |", "|" + "---|" * (len(head) - 1)]
    section = None
    for sec, metric, values, unit in table:
        if sec != section:
            lines.append(f"| **{sec}** |" + " |" * (len(head) - 2))
            section = sec
        cells = [_fmt(values.get(lb), unit) if lb in values else "–" for lb in labels]
        if ratio:
            cells.append(_ratio(values.get(RATIO_OF[0]), values.get(RATIO_OF[1])))
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    if results.get("metrics_cost"):
        lines += ([""] if table else []) + metrics_cost_lines(results["metrics_cost"])
    if results.get("notes"):
        lines += ["", *[f"- {note}" for note in results["notes"]]]
    return "\n".join(lines) + "\n"


def metrics_cost_lines(cost: dict) -> list:
    """The metrics_cost scenario's section: CPU per message with the metrics on and off, and the limit."""
    lines = ["## What the metrics cost on the long-poll path", ""]
    if "skipped" in cost:
        return lines + [f"Not run: {cost['skipped']}."]
    us = {setting: f"{cost[setting]['median']:,.0f} / {cost[setting]['mean']:,.0f} ({cost[setting]['runs']})"
          for setting in ("on", "off")}
    limit = f"≤ {cost['limit_pct']:.0f} %"
    lines += [
        f"Worker CPU per delivered long-poll message (µs, `/proc`), hipush with {cost['workers']} worker and "
        f"{cost['clients']} clients in lock step (`bench/cpu_per_message.py`, Redis {cost['redis_url']}, database "
        f"{cost['database_url']}), with its Prometheus metrics counting (on) and with every counting function a "
        f"no-op (off, `bench/metrics_off.py`): {cost['pairs']} servers of each, alternating (on, off, off, on, ...), "
        f"{cost['runs_per_server']} runs of {cost['messages_per_run']:,} messages on each. Where the workers are "
        "the bottleneck the unicast ceiling drops by about the fraction CPU per message rises (1 − off/on); the "
        "CPU time is the steadier figure (the ceilings move with the machine's load).", "",
        "| metric | measured | limit |", "|---|---|---|",
        f"| metrics on: µs/message, median / mean (runs) | {us['on']} | |",
        f"| metrics off: µs/message, median / mean (runs) | {us['off']} | |",
        f"| cost: CPU per message, on over off (medians; of the means) | {cost['cost_pct']:+.1f} % "
        f"({cost['cost_pct_of_means']:+.1f} %) | |",
        f"| unicast ceiling drop where the workers are the bottleneck (1 − off/on, medians) | "
        f"{cost['ceiling_drop_pct']:.1f} % | {limit} |",
        f"| the counting alone, timed in-process (`bench/metrics_counting.py`): µs per delivered message, and its "
        f"share of the off median | {cost['counting_us_per_message']} µs = {cost['counting_pct']} % "
        f"({'within' if cost['within_limit'] else 'over'} the limit) | {limit} |",
        "| cost per pair of servers (its on over its off, medians) | " +
        ", ".join(f"{pct:+.1f} %" for pct in cost["pair_cost_pct"]) +
        (f"; mean {cost['pair_cost_mean_pct']:+.1f} % ± {cost['pair_cost_sem_pct']:.1f} % (standard error)"
         if cost["pair_cost_sem_pct"] is not None else "") + " | |",
    ]
    return lines


def charts(results: dict, out_dir: Path, name: str) -> list:
    """latency vs rate, fan-out completion; [] when matplotlib is not installed (make test does not need it)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []
    unicast = _series(results, {"unicast": "", "unicast_sse": " SSE", "unicast_batch": " /push/batch + SSE"})
    if unicast:
        fig, ax = plt.subplots(figsize=(8, 5))
        for label, r in unicast.items():
            steps = [s for s in r.get("steps", []) if s["latency_ms"]["p50"] is not None]
            steps.sort(key=lambda s: s["rate"])
            rates = [s["rate"] for s in steps]
            line, = ax.plot(rates, [s["latency_ms"]["p99"] for s in steps], marker="o", label=f"{label} p99")
            ax.plot(rates, [s["latency_ms"]["p50"] for s in steps], marker=".", linestyle="--",
                    color=line.get_color(), label=f"{label} p50")
        ax.axhline(200, color="grey", linewidth=0.8, linestyle=":")
        ax.set_xlabel("offered unicast rate (messages/s)")
        ax.set_ylabel("publish-to-receipt latency (ms, log)")
        ax.set_yscale("log")
        ax.set_title(f"Unicast latency vs rate — {name}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        path = out_dir / f"{name}-latency-vs-rate.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)
    fan = _series(results, {"fanout": "", "fanout_sse": " SSE"})
    if fan:
        fig, ax = plt.subplots(figsize=(8, 5))
        sizes = sorted({int(n) for by_n in fan.values() for n in by_n})
        styles = ["-", "--", ":", "-."]
        for number, (label, by_n) in enumerate(fan.items()):
            color = f"C{number}"  # one colour per system, one line style per subscriber count
            for n, r in sorted(by_n.items(), key=lambda kv: int(kv[0])):
                if "rounds" not in r:
                    continue
                row = next(x for x in r["rounds"] if x["round"] == r["median_round"])
                cdf = [max(0.1, x) for x in row["cdf_ms"]]
                if cdf:
                    fraction = [100.0 * row["received"] / int(n) * i / (len(cdf) - 1) for i in range(len(cdf))]
                    ax.plot(cdf, fraction, color=color, linestyle=styles[sizes.index(int(n)) % len(styles)],
                            label=f"{label}, {int(n):,} subscribers")
        ax.set_xscale("log")
        ax.set_xlabel("time since the publish call began (ms, log)")
        ax.set_ylabel("subscribers that have the message (%)")
        ax.set_title(f"Fan-out completion — {name}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        path = out_dir / f"{name}-fanout.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)
    return made


def _series(results: dict, suffixes: dict) -> dict:
    """One chart's lines: {system label + the transport's suffix: its results} over the result keys given."""
    return {label + suffix: r for key, suffix in suffixes.items() for label, r in results.get(key, {}).items()}


def write(results: dict, out_dir: Path, name: str, with_charts: bool = True) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out_dir / f"{name}.md", "json": out_dir / f"{name}.json"}
    if with_charts:
        results["charts"] = [str(p) for p in charts(results, out_dir, name)]
    paths["markdown"].write_text(markdown(results))
    paths["json"].write_text(json.dumps(results, indent=1, default=str))
    return paths
