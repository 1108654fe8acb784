"""The self-test result (firmware/selftest.py's plain data) as a table for people.

Failures are always listed in full. Passing per-finger parts ("force[3]", "finger[3]") are folded
into one line per kind unless every part is asked for.
"""

import re

_INDEXED = re.compile(r"^(\w+)\[(\d+)\]$")


def _rows(report, every_part):
    rows = []
    folded = {}  # kind -> list of passing indices
    for p in report["parts"]:
        m = _INDEXED.match(p["part"])
        if m and p["ok"] and not every_part:
            kind = m.group(1)
            if kind not in folded:
                folded[kind] = []
                rows.append(("fold", kind))
            folded[kind].append((int(m.group(2)), p))
            continue
        rows.append(("part", p))
    out = []
    for what, item in rows:
        if what == "part":
            out.append((item["part"], "ok" if item["ok"] else "FAIL", item["detail"]))
        else:
            entries = folded[item]
            idx = [i for i, _ in entries]
            name = "%s[%s]" % (item, _ranges(idx))
            out.append((name, "ok", "%d passed%s" % (len(idx), _summary(item, entries))))
    return out


def _ranges(idx):
    idx = sorted(idx)
    spans = []
    start = prev = idx[0]
    for i in idx[1:]:
        if i != prev + 1:
            spans.append((start, prev))
            start = i
        prev = i
    spans.append((start, prev))
    return ",".join("%d" % a if a == b else "%d..%d" % (a, b) for a, b in spans)


def _summary(kind, entries):
    vals = [p["values"] for _, p in entries]
    if kind == "force" and all("cn" in v for v in vals):
        cn = [v["cn"] for v in vals]
        return ", unloaded %d..%d cN" % (min(cn), max(cn))
    if kind == "finger" and all("contact_um" in v for v in vals):
        c = [v["contact_um"] for v in vals]
        f = [v["press_cn"] for v in vals]
        return ", contact %.1f..%.1f mm (plate %.1f mm), %d..%d cN 0.5 mm further" % (
            min(c) / 1000,
            max(c) / 1000,
            vals[0]["plate_um"] / 1000,
            min(f),
            max(f),
        )
    return ""


def format_report(report, every_part=False, title=None):
    rows = _rows(report, every_part)
    w0 = max([len("part")] + [len(r[0]) for r in rows])
    lines = []
    if title:
        lines.append(title)
    lines.append("%-*s  %-6s %s" % (w0, "part", "result", "detail"))
    lines.append("%s  %s %s" % ("-" * w0, "-" * 6, "-" * 40))
    for name, result, detail in rows:
        lines.append("%-*s  %-6s %s" % (w0, name, result, detail))
    failed = report["failed"]
    lines.append("")
    if report["ok"]:
        lines.append(
            "self-test (%s): PASS, %d parts in %.1f s"
            % (report["mode"], len(report["parts"]), report["elapsed_ms"] / 1000)
        )
    else:
        lines.append(
            "self-test (%s): FAIL, %d of %d parts failed: %s"
            % (report["mode"], len(failed), len(report["parts"]), ", ".join(failed))
        )
    return "\n".join(lines)
