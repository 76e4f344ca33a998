#!/usr/bin/env python3
"""The Grafana dashboard and the Prometheus rules query what they promise.

- The dashboard is valid JSON, and its stat and table panels ask for the current value
  (instant queries), not the last value of every series the time range saw (after a pause
  and a rollback, a range query with lastNotNull showed three phases at once).
- Every query of client traffic (requests, latency, answers cut short, streams), in the
  dashboard and in the rules, leaves mirrored requests out (stage!~".*/mirror"), unless it
  asks for them or shows the stage.
- promtool runs the dashboard's queries ($model = m, $__rate_interval = 5m) over series of a
  rollout paused, resumed and rolled back, with a mirror stage and a candidate without a
  single 5xx, and each panel shows what it should.

usage: check_dashboard.py SOURCE_DIR
"""
import json
import pathlib
import re
import subprocess
import sys
import tempfile

import yaml

src = pathlib.Path(sys.argv[1]).resolve()
dashboard_path = src / "deploy" / "grafana" / "stagegate-rollouts.json"
rules_dir = src / "deploy" / "prometheus"
problems = []

try:
    dashboard = json.loads(dashboard_path.read_text())
except json.JSONDecodeError as e:
    print(f"{dashboard_path}: not valid JSON: {e}")
    sys.exit(1)

panels = {p.get("title"): p for p in dashboard.get("panels", [])}

for title, panel in panels.items():
    if panel.get("type") not in ("stat", "table"):
        continue
    for t in panel.get("targets", []):
        if t.get("instant") is not True or t.get("range") is not False:
            problems.append(f"panel {title!r}: a {panel['type']} panel shows one value per series "
                            f"now: its query {t.get('refId')} must be instant "
                            '("instant": true, "range": false)')

# Families whose series carry stage="<stage>/mirror" for mirrored requests.
client_family = re.compile(r"\b(stagegate_requests_total|stagegate_request_duration_seconds\w*|"
                           r"stagegate_responses_cut_short_total|stagegate_upstream_errors_total|"
                           r"stagegate_stream_\w+)"
                           r"(\{[^}]*\})?")


def mirror_problems(where, expr):
    shows_stage = any("stage" in [g.strip() for g in group.split(",")]
                      for group in re.findall(r"\bby\s*\(([^)]*)\)", expr))
    for m in client_family.finditer(expr):
        selector = m.group(2) or ""
        if shows_stage or re.search(r'stage\s*(!~|=~)\s*"\.\*/mirror"', selector):
            continue
        problems.append(f"{where}: {m.group(0)} counts mirrored requests: add "
                        'stage!~".*/mirror" (or show the stage)')


for title, panel in panels.items():
    for t in panel.get("targets", []):
        mirror_problems(f"panel {title!r} query {t.get('refId')}", t.get("expr", ""))
for a in dashboard.get("annotations", {}).get("list", []):
    mirror_problems(f"annotation {a.get('name')!r}", a.get("expr", ""))
for path in sorted(rules_dir.glob("*.yml")):
    for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("record") or rule.get("alert")
            mirror_problems(f"{path.name} {name}", rule.get("expr", ""))


def panel_exprs(title):
    """The panel's queries with Grafana's variables filled in."""
    if title not in panels:
        problems.append(f"no panel titled {title!r}")
        return []
    return [t["expr"].replace("$__rate_interval", "5m").replace("$model", "m")
            for t in panels[title]["targets"]]


# Two replicas' worth of one model over 20 minutes: stable v1 and candidate v2 at canary-5
# (from 4 m canary-25), half of stable's traffic mirrored to v2, every mirrored request slow
# and one in five failing; clients never get a 5xx from v2. The rollout progresses, is paused
# at 6 m, resumed at 9 m and rolled back at 12 m.
series = {
    'stagegate_requests_total{instance="a", model="m", version="v1", stage="canary-5", code="200"}': "0+570x20",
    'stagegate_requests_total{instance="a", model="m", version="v1", stage="canary-5", code="500"}': "0+6x20",
    'stagegate_requests_total{instance="a", model="m", version="v2", stage="canary-5", code="200"}': "0+30x20",
    'stagegate_requests_total{instance="a", model="m", version="v2", stage="canary-5/mirror", code="200"}': "0+228x20",
    'stagegate_requests_total{instance="a", model="m", version="v2", stage="canary-5/mirror", code="503"}': "0+57x20",
    'stagegate_request_duration_seconds_bucket{instance="a", model="m", version="v2", stage="canary-5", le="0.01"}': "0+30x20",
    'stagegate_request_duration_seconds_bucket{instance="a", model="m", version="v2", stage="canary-5", le="+Inf"}': "0+30x20",
    'stagegate_request_duration_seconds_bucket{instance="a", model="m", version="v2", stage="canary-5/mirror", le="0.01"}': "0x20",
    'stagegate_request_duration_seconds_bucket{instance="a", model="m", version="v2", stage="canary-5/mirror", le="+Inf"}': "0+285x20",
    'stagegate_rollout_phase{instance="a", model="m", candidate="v2", phase="progressing"}': "1 1 1 1 1 1 0 0 0 1 1 1 0 0 0 0 0 0 0 0 0",
    'stagegate_rollout_phase{instance="a", model="m", candidate="v2", phase="paused"}': "0 0 0 0 0 0 1 1 1 0 0 0 0 0 0 0 0 0 0 0 0",
    'stagegate_rollout_phase{instance="a", model="m", candidate="v2", phase="rolled_back"}': "0 0 0 0 0 0 0 0 0 0 0 0 1 1 1 1 1 1 1 1 1",
    'stagegate_rollout_stage_seconds{instance="a", model="m", stage="canary-5"}': "0+60x3 stale",
    'stagegate_rollout_stage_seconds{instance="a", model="m", stage="canary-25"}': "_x4 0+60x16",
}
expected = {
    # The candidate's rate is what clients sent it (0.5 rps), not 5.25 with the mirrors.
    "Requests per second by version": [
        ('{version="v1"}', 9.6), ('{version="v2"}', 0.5)],
    # A version with no 5xx shows 0, not an empty panel; mirrors' errors are not the clients'.
    "Error ratio by version": [
        ('{model="m", version="v1"}', 0.0104), ('{model="m", version="v2"}', 0)],
    # One phase: the one the rollout is in now.
    "Rollout phase": [('{candidate="v2", phase="rolled_back"}', 1)],
    "Current stage": [('{stage="canary-25"}', 960)],
}
tests = []
for title, samples in expected.items():
    for expr in panel_exprs(title):
        # Rounded to 4 decimals: promtool compares floats exactly.
        tests.append({"expr": f"round({expr}, 0.0001)", "eval_time": "20m",
                      "exp_samples": [{"labels": l, "value": v} for l, v in samples]})
# Latency: the clients' answers are within 10 ms; with the mirrored ones p50 and p99 would be
# past it.
for expr in panel_exprs("p99 latency by version"):
    tests.append({"expr": f"({expr}) <= bool 0.01", "eval_time": "20m",
                  "exp_samples": [{"labels": '{version="v2"}', "value": 1}]})

unit = {
    "rule_files": [str(rules_dir / "stagegate-rules.yml")],
    "evaluation_interval": "1m",
    "tests": [{
        "name": "dashboard panels over a paused, rolled back rollout with a mirror stage",
        "interval": "1m",
        "input_series": [{"series": s, "values": v} for s, v in series.items()],
        "promql_expr_test": tests,
    }],
}
with tempfile.TemporaryDirectory() as tmp:
    test_file = pathlib.Path(tmp) / "dashboard.test.yml"
    test_file.write_text(yaml.safe_dump(unit, sort_keys=False))
    r = subprocess.run(["promtool", "test", "rules", str(test_file)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        problems.append(f"promtool test rules on the dashboard's queries:\n{r.stdout}{r.stderr}")

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"{dashboard_path.name}: {len(panels)} panels; {len(tests)} queries give what they show")
