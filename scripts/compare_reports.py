#!/usr/bin/env python3
"""Checks that two lossdiff report directories reached the same conclusions, bit for bit.

    python3 scripts/compare_reports.py SINGLE_MACHINE_REPORT MERGED_REPORT

Used to hold a sharded, merged nightly against the same experiments run on one machine: every
entry (cross-arm comparison and golden check) must have the same verdict, pass/fail, onset step,
effect size, p-value and margin — compared as exact floats, not within a tolerance — and the full
comparison records in experiments.json (every lane's statistics, Holm's adjusted p-values) must be
equal. Prints one line per entry and a summary; exits 0 when identical, 1 on any mismatch, 2 when
a report cannot be read or has missing cells.
"""

import json
import sys
from pathlib import Path

# Fields of a summary.json entry that are conclusions. `figure_path` is where a picture was put,
# and differs legitimately between a report and a merge that reuses its shards' figures.
ENTRY_FIELDS = ("verdict", "passed", "numbers", "summary", "undeclared_differences",
                "environment_differences")
# Fields of an experiments.json report that are conclusions (not `trained`/`cached`, which say
# where the runs came from, nor `spec`, which is a path).
REPORT_FIELDS = ("cells", "sweep_gate", "passed", "missing")


def load(directory, name):
    path = Path(directory) / name
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        print(f"compare_reports: cannot read {path}: {e}", file=sys.stderr)
        sys.exit(2)


def first_difference(a, b, path=""):
    """Returns the JSON path of the first difference between a and b, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}.{k} (present in one only)"
            d = first_difference(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path} (length {len(a)} vs {len(b)})"
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    # Exact: 0.1 and 0.1000000000000001 are different results here.
    if type(a) is not type(b) or a != b:
        return f"{path} ({a!r} vs {b!r})"
    return None


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    single, merged = argv[1], argv[2]
    problems = []

    s_sum, m_sum = load(single, "summary.json"), load(merged, "summary.json")
    s_entries = {e["name"]: e for e in s_sum["entries"]}
    m_entries = {e["name"]: e for e in m_sum["entries"]}
    missing = [e["name"] for e in m_sum["entries"] if e["verdict"] == "not run"]
    if missing:
        print(f"compare_reports: {merged} has missing cells: {', '.join(missing)}", file=sys.stderr)
        return 2
    for name in sorted(set(s_entries) ^ set(m_entries)):
        where = single if name in s_entries else merged
        problems.append(f"{name}: only in {where}")
    for name in [n for n in s_entries if n in m_entries]:
        a, b = s_entries[name], m_entries[name]
        diff = first_difference({k: a.get(k) for k in ENTRY_FIELDS},
                                {k: b.get(k) for k in ENTRY_FIELDS})
        n = a["numbers"]
        mark = "same" if diff is None else "DIFF"
        print(f"  {mark} {name}: {a['verdict']}, onset {n.get('onset_step')}, "
              f"effect {n.get('effect_size')}, p {n.get('p_value')}")
        if diff:
            problems.append(f"{name}: {diff}")

    s_exp = {r["experiment"]: r for r in load(single, "experiments.json")["experiments"]}
    m_exp = {r["experiment"]: r for r in load(merged, "experiments.json")["experiments"]}
    if set(s_exp) != set(m_exp):
        problems.append(f"experiments differ: {sorted(s_exp)} vs {sorted(m_exp)}")
    records = 0
    for name in sorted(set(s_exp) & set(m_exp)):
        a, b = s_exp[name], m_exp[name]
        diff = first_difference({k: a.get(k) for k in REPORT_FIELDS},
                                {k: b.get(k) for k in REPORT_FIELDS})
        if diff:
            problems.append(f"{name}: {diff}")
        for kind, key in (("comparisons", ("cell", "a", "b")), ("goldens", ("cell", "arm"))):
            xs = {tuple(c[k] for k in key): c for c in a[kind]}
            ys = {tuple(c[k] for k in key): c for c in b[kind]}
            records += len(xs)
            if sorted(xs) != sorted(ys):
                problems.append(f"{name} {kind}: {sorted(xs)} vs {sorted(ys)}")
                continue
            for k in sorted(xs):
                diff = first_difference(xs[k], ys[k])
                if diff:
                    problems.append(f"{name} {kind} {k}: {diff}")
    if s_sum["gate"]["passed"] != m_sum["gate"]["passed"]:
        problems.append(f"gate: passed {s_sum['gate']['passed']} vs {m_sum['gate']['passed']}")

    if problems:
        print(f"MISMATCH between {single} and {merged}:")
        for p in problems:
            print(f"  {p}")
        return 1
    print(f"identical: {len(s_entries)} entries ({records} comparison records, "
          f"{len(s_exp)} experiments): verdicts, onsets, effects, p-values and Holm's "
          f"correction match exactly; gate passed = {s_sum['gate']['passed']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
