#!/usr/bin/env python3
"""Checks the operator files against closeorderd's metrics contract (stdlib only).

    contrib/check_dashboard.py dashboard DASHBOARD.json
    contrib/check_dashboard.py rules RULES.yml
    contrib/check_dashboard.py tests RULES_TEST.yml
    contrib/check_dashboard.py source ReaperMetrics.swift

`dashboard`: the file is JSON, every panel (rows and nested panels included) has a unique id,
the `datasource` and `instance` variables are there. `dashboard` and `rules`: every metric
name in an `expr` (and in the variables' label_values queries) is one of the contract's, every
label a matcher or a by/on clause names exists, and every `=`/`!=` matcher value on a label
with a fixed set of values is one of them, so that a renamed metric, label or value fails
instead of silently matching nothing. `tests`: the same for the unit tests' input series, so
that they stay shaped like what the daemon exports. `source`: the daemon's `ReaperMetrics.Name` spells the
same names as CONTRACT below.

Prints one line: `ok: ...` and exits 0, or the problems and exits 1.
"""

import json
import re
import sys

# The metrics contract (README, "Metrics"; Sources/Reaper/Metrics/ReaperMetrics.swift):
# metric -> its labels. Prometheus adds instance and job to every series.
CONTRACT = {
    "closeorderd_calls_total": {"api", "call", "outcome"},
    "closeorderd_call_errors_total": {"api", "call", "err_code"},
    "closeorderd_call_duration_seconds": {"api", "call", "host"},
    "closeorderd_orders_finished_total": {"state"},
    "closeorderd_close_lateness_seconds": set(),
    "closeorderd_due_orders": set(),
    "closeorderd_oldest_due_age_seconds": set(),
    "closeorderd_in_flight_calls": set(),
    "closeorderd_outage_breaker_open": set(),
    "closeorderd_merchant_rate_limit": {"mch_id"},
    "closeorderd_database_errors_total": {"operation"},
    "closeorderd_ready": set(),
    "closeorderd_build_info": {"version"},
}
HISTOGRAMS = {"closeorderd_call_duration_seconds", "closeorderd_close_lateness_seconds"}
LABEL_VALUES = {
    "api": {"v2", "v3"},
    "call": {"closeorder", "orderquery"},
    "outcome": {"closed", "paid", "retry", "failed", "not_paid", "paying"},
    "err_code": {
        "ORDERPAID", "ORDERCLOSED", "ORDERNOTEXIST", "USER_PAYING", "SYSTEMERROR", "FREQUENCY_LIMITED",
        "RULE_LIMIT", "SIGNERROR", "XML_FORMAT_ERROR", "REQUIRE_POST_METHOD", "PARAM_ERROR",
        "INVALID_REQUEST", "NO_AUTH", "other",
    },
    "host": {"primary", "backup"},
    "state": {"closed", "paid", "failed"},
    "operation": {"claim", "release", "recheck", "record", "backlog"},
}
TARGET_LABELS = {"instance", "job"}


def series_labels():
    """Every series name a query may select -> the labels it carries."""
    names = {"up": set(TARGET_LABELS)}
    for metric, labels in CONTRACT.items():
        if metric in HISTOGRAMS:
            names[metric + "_bucket"] = labels | TARGET_LABELS | {"le"}
            names[metric + "_sum"] = labels | TARGET_LABELS
            names[metric + "_count"] = labels | TARGET_LABELS
        else:
            names[metric] = labels | TARGET_LABELS
    return names


SERIES = series_labels()
ALL_LABELS = set().union(*SERIES.values())

AGGREGATORS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile",
}
FUNCTIONS = AGGREGATORS | {
    "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
    "day_of_month", "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp", "floor",
    "histogram_quantile", "holt_winters", "hour", "idelta", "increase", "irate", "label_join",
    "label_replace", "ln", "log2", "log10", "minute", "month", "predict_linear", "rate", "resets",
    "round", "scalar", "sgn", "sort", "sort_desc", "sqrt", "time", "timestamp", "vector", "year",
    "avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time",
    "quantile_over_time", "stddev_over_time", "stdvar_over_time", "last_over_time", "present_over_time",
}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}

TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<var>\$\{[^}]*\}|\$\w+)
  | (?P<number>(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)(?:ms|[smhdwy])?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^(){},=<>@])
    """,
    re.VERBOSE,
)


def tokens(expr):
    at = 0
    out = []
    while at < len(expr):
        match = TOKEN.match(expr, at)
        if not match:
            raise ValueError(f"cannot read {expr[at:at + 20]!r}")
        at = match.end()
        if match.lastgroup != "space":
            out.append((match.lastgroup, match.group()))
    return out


def unquote(literal):
    if literal[0] == "`":
        return literal[1:-1]
    return json.loads('"' + literal[1:-1].replace('\\"', '"').replace('"', '\\"') + '"')


def check_expr(expr, where):
    """The problems with one PromQL expression (an empty list when it keeps to the contract)."""
    problems = []
    try:
        toks = tokens(expr)
    except ValueError as error:
        return [f"{where}: {error}"]
    metrics = 0
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        following = toks[i + 1][1] if i + 1 < len(toks) else None
        if kind == "ident" and text in GROUPING:
            if following == "(":
                i += 2
                while i < len(toks) and toks[i][1] != ")":
                    if toks[i][0] == "ident" and toks[i][1] not in ALL_LABELS:
                        problems.append(f"{where}: label {toks[i][1]!r} in {text}(...) is not in the contract")
                    i += 1
            i += 1
            continue
        if kind == "ident" and (following == "(" or (text in AGGREGATORS and following in ("by", "without"))):
            if text not in FUNCTIONS:
                problems.append(f"{where}: unknown function {text!r}")
            i += 1
            continue
        if kind == "ident" and text.lower() in KEYWORDS:
            i += 1
            continue
        metric = None
        if kind == "ident":
            metric = text
            metrics += 1
            if metric not in SERIES:
                problems.append(f"{where}: metric {metric!r} is not in the contract")
            i += 1
        if i < len(toks) and toks[i][1] == "{" and (metric is not None or kind == "op"):
            i += 1
            while i < len(toks) and toks[i][1] != "}":
                if toks[i][0] == "ident":
                    label, op = toks[i][1], toks[i + 1][1]
                    value = unquote(toks[i + 2][1])
                    metrics += label == "__name__"
                    problems += check_matcher(label, op, value, metric, where)
                    i += 3
                else:
                    i += 1
            i += 1
            continue
        if metric is None:
            i += 1
    if metrics == 0:
        problems.append(f"{where}: names no metric")
    return problems


def check_matcher(label, op, value, metric, where):
    if label == "__name__":
        if op == "=" and value not in SERIES:
            return [f"{where}: metric {value!r} is not in the contract"]
        return []
    known = SERIES.get(metric, ALL_LABELS) if metric else ALL_LABELS
    if label not in known:
        return [f"{where}: {metric or 'selector'} has no label {label!r}"]
    allowed = LABEL_VALUES.get(label)
    if allowed is None:
        return []
    if op in ("=", "!="):
        values = [value]
    elif re.fullmatch(r"[A-Za-z0-9_|]+", value):  # a plain alternation of literals
        values = value.split("|")
    else:
        return []
    return [f"{where}: {label}={v!r} is not one of the contract's values" for v in values if v not in allowed]


def rule_exprs(path):
    """(line, expr) for every `expr:` of a rule file, plain or a `|`/`>` block (no YAML parser)."""
    lines = open(path, encoding="utf-8").read().splitlines()
    found = []
    for number, line in enumerate(lines):
        match = re.match(r"^(\s*)(?:-\s+)?expr:\s*(.*?)\s*$", line)
        if not match:
            continue
        indent, value = len(match.group(1)), match.group(2)
        if re.fullmatch(r"[|>][-+]?", value):
            block = []
            for following in lines[number + 1:]:
                if following.strip() and len(following) - len(following.lstrip()) <= indent:
                    break
                block.append(following.strip())
            value = " ".join(part for part in block if part)
        elif value[:1] in "\"'":
            value = unquote(value)
        found.append((number + 1, value))
    return found


def check_rules(path):
    exprs = rule_exprs(path)
    problems = [p for line, expr in exprs for p in check_expr(expr, f"{path}:{line}")]
    if not exprs:
        problems.append(f"{path}: no expr found")
    return problems, f"{len(exprs)} rule expressions use only the contract's metrics, labels and values"


def check_tests(path):
    """The input series (and any promql_expr_test) of a `promtool test rules` file."""
    text = open(path, encoding="utf-8").read()
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for quote, selector in re.findall(r"series:\s*(['\"])(.*?)\1", line):
            found.append((number, unquote('"' + selector + '"') if quote == '"' else selector))
    found += rule_exprs(path)
    problems = [p for line, expr in found for p in check_expr(expr, f"{path}:{line}")]
    if not found:
        problems.append(f"{path}: no series found")
    return problems, f"{len(found)} input series and expressions use only the contract's metrics, labels and values"


def all_panels(panels):
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def check_dashboard(path):
    try:
        with open(path, encoding="utf-8") as file:
            dashboard = json.load(file)
    except (OSError, ValueError) as error:
        return [f"{path}: not valid JSON: {error}"], ""
    problems = []
    panels = list(all_panels(dashboard.get("panels", [])))
    ids = [panel.get("id") for panel in panels]
    for panel in panels:
        if not isinstance(panel.get("id"), int):
            problems.append(f"{path}: panel {panel.get('title')!r} has no integer id")
    for duplicate in sorted({i for i in ids if ids.count(i) > 1 and i is not None}):
        problems.append(f"{path}: panel id {duplicate} is used {ids.count(duplicate)} times")
    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    source = variables.get("datasource", {})
    if source.get("type") != "datasource" or source.get("query") != "prometheus":
        problems.append(f"{path}: no `datasource` variable of type prometheus")
    if not any(i.get("name") == "DS_PROMETHEUS" for i in dashboard.get("__inputs", [])):
        problems.append(f"{path}: no DS_PROMETHEUS input")
    if "instance" not in variables:
        problems.append(f"{path}: no `instance` variable")
    exprs = []
    for panel in panels:
        for target in panel.get("targets", []):
            if "expr" in target:
                exprs.append((f"panel {panel.get('id')} {panel.get('title')!r} {target.get('refId')}", target["expr"]))
        if panel.get("targets") and panel.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"{path}: panel {panel.get('id')} does not use the $datasource variable")
    queries = []
    for name, variable in variables.items():
        if variable.get("type") == "query":
            query = variable.get("query")
            query = query.get("query") if isinstance(query, dict) else query
            queries += [(name, q) for q in (query, variable.get("definition")) if q]
    for name, query in queries:
        # Grafana's label_values(SELECTOR, LABEL): the selector is PromQL, the label must exist.
        match = re.fullmatch(r"\s*label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)\s*", query)
        if not match:
            problems.append(f"{path}: variable {name}: expected label_values(metric, label), got {query!r}")
            continue
        exprs.append((f"variable {name}", match.group(1)))
        metric = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", match.group(1))
        if match.group(2) not in SERIES.get(metric.group() if metric else "", ALL_LABELS):
            problems.append(f"{path}: variable {name}: {match.group(1)} has no label {match.group(2)!r}")
    for where, expr in exprs:
        problems += check_expr(expr, f"{path}: {where}")
    return problems, (f"{len(panels)} panels with unique ids; {len(exprs)} queries use only the contract's "
                      "metrics, labels and values")


def check_source(path):
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as error:
        return [f"{path}: {error}"], ""
    names = set(re.findall(r'static let \w+ = "(closeorderd_\w+)"', text))
    problems = [f"{path}: the daemon exports {n!r}, not in the contract" for n in sorted(names - set(CONTRACT))]
    problems += [f"{path}: the daemon does not export {n!r}" for n in sorted(set(CONTRACT) - names)]
    return problems, f"the daemon's {len(names)} metric names are the contract's"


def main(argv):
    if len(argv) != 3 or argv[1] not in ("dashboard", "rules", "tests", "source"):
        print("usage:\n" + "\n".join(__doc__.strip().splitlines()[2:6]), file=sys.stderr)
        return 64
    check = {"dashboard": check_dashboard, "rules": check_rules, "tests": check_tests, "source": check_source}[argv[1]]
    problems, summary = check(argv[2])
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"ok: {argv[2]}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
