#!/usr/bin/env python3
"""Checks the Grafana dashboard against real scrapes.

usage: check_dashboard.py [--ignore-prefix P]... DASHBOARD.json RULES_OUT.yml SCRAPE...

Every metric name the dashboard queries (panel targets and template
variables) must appear in at least one of the scrape files, which the
caller took from the real binary in each mode. Each query is also written
to RULES_OUT.yml as a recording rule (Grafana variables replaced by sample
values) so that `promtool check rules` can parse every expression.
--ignore-prefix names a family the caller could not scrape here (it prints
why); those names are listed as unchecked instead. Prints what it found; exits 1 when a name is missing or nothing was found.
"""
import json
import re
import sys

NAME = re.compile(r"\boracle_watchdog_[a-zA-Z0-9_:]*")


def queries(node, where="dashboard"):
    """Yields (where, query) for every PromQL string in the dashboard."""
    if isinstance(node, dict):
        title = node.get("title") or node.get("name") or where
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield title, value
            elif key == "definition" and isinstance(value, str):
                yield title, value
            else:
                yield from queries(value, title)
    elif isinstance(node, list):
        for item in node:
            yield from queries(item, where)


def scraped_names(paths):
    names = set()
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("# TYPE "):
                    names.add(line.split()[2])
                elif line.strip() and not line.startswith("#"):
                    names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def grafana_to_promql(q):
    """Replaces Grafana variables and label_values() with parseable PromQL."""
    q = q.replace("$__rate_interval", "5m").replace("$__interval", "1m")
    q = re.sub(r"\$\{?node\}?", ".*", q)
    m = re.fullmatch(r"\s*label_values\(\s*([^,]+),\s*\w+\s*\)\s*", q)
    return m.group(1) if m else q


def main():
    args = sys.argv[1:]
    ignored = []
    while len(args) >= 2 and args[0] == "--ignore-prefix":
        ignored.append(args[1])
        args = args[2:]
    dashboard_path, rules_out, scrapes = args[0], args[1], args[2:]
    with open(dashboard_path, encoding="utf-8") as f:
        dashboard = json.load(f)
    found = list(queries(dashboard))
    have = scraped_names(scrapes)
    wanted = {}
    for where, q in found:
        for name in NAME.findall(q):
            wanted.setdefault(name, set()).add(where)
    unchecked = sorted(n for n in wanted if n not in have and n.startswith(tuple(ignored)))
    missing = sorted(n for n in wanted if n not in have and n not in unchecked)
    print(f"dashboard: {len(found)} queries use {len(wanted)} metric names; "
          f"{len(have)} names in {len(scrapes)} scrape(s)")
    for name in unchecked:
        print(f"  UNCHECKED {name} (no scrape of that feature here)")
    for name in missing:
        print(f"  MISSING {name} (panels: {', '.join(sorted(wanted[name]))})")
    with open(rules_out, "w", encoding="utf-8") as f:
        f.write("groups:\n  - name: dashboard-queries\n    rules:\n")
        for i, (_, q) in enumerate(found):
            f.write(f"      - record: dashboard:query{i}\n        expr: {json.dumps(grafana_to_promql(q))}\n")
    if not found or not wanted:
        print("  no queries found: wrong file?")
        return 1
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
