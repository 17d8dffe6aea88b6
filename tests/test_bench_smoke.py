"""The benchmark harness still works: `python -m bench` against hipush only, tiny (no Nchan, no charts).

Parked polls (N=50) and a unicast step (20 clients, 100 msg/s for 1 s) on hipush with one gevent worker,
SQLite and hipush's embedded redis-server in the run's temporary directory, whatever backend the rest of
the suite uses: the bench flushes its Redis database, and a shared server's is nobody's to flush here.
The metrics' cost: one server with them and one without, one run of 40 messages each (embedded too).
"""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_harness_smoke(tmp_path):
    command = [sys.executable, "-m", "bench", "--name", "smoke", "--out", str(tmp_path), "--no-charts",
               "--systems", "hipush-1w", "--scenarios", "parked,unicast,metrics_cost", "--database", "sqlite",
               "--redis-url", "", "--parked-levels", "50", "--hold-seconds", "1",
               "--unicast-clients", "20", "--rates", "100", "--ramp", "", "--step-seconds", "1",
               "--drain-seconds", "3", "--quick", "--set", "metrics_cost_pairs=1", "--set", "metrics_cost_runs=1",
               "--set", "metrics_cost_messages=40", "--set", "metrics_cost_clients=4",
               "--set", "metrics_cost_warmup=20"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((tmp_path / "smoke.json").read_text())

    level = results["parked"]["hipush-1w"]["levels"][0]
    assert level["n"] == 50 and level["server_parked"] == 50 and level["errors"] == 0, level
    assert level["rss_kb"] > 0 and level["idle_cpu_pct"] >= 0

    step = results["unicast"]["hipush-1w"]["steps"][0]
    assert step["rate"] == 100 and step["planned"] == 100, step
    assert step["published_ok"] == 100 and step["lost_final"] == 0 and step["misrouted"] == 0, step
    assert step["latency_ms"]["p50"] is not None and step["latency_ms"]["p50"] >= 0

    cost = results["metrics_cost"]
    assert cost["on"]["runs"] == cost["off"]["runs"] == 1 and cost["on"]["median"] > 0 < cost["off"]["median"], cost
    assert cost["limit_pct"] == 3.0 and len(cost["pair_cost_pct"]) == 1, cost

    table = (tmp_path / "smoke.md").read_text()
    assert "| N=50: held by the server (client-side errors) | 50 (0) |" in table
    assert "100 msg/s: publish-to-receipt p99" in table
    assert "| metrics off: µs/message, median / mean (runs) |" in table and "| ≤ 3 % |" in table
