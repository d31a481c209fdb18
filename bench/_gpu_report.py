"""The markdown table of a bench/gpu_check.py run, from its JSON payload alone."""


def _num(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and (abs(value) >= 1e4 or 0 < abs(value) < 1e-2):
        return f"{value:.2e}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _summary(step: dict) -> str:
    """One line per step for the overview table."""
    result = step.get("result") or {}
    if step["status"] != "measured":
        return step["reason"] or ""
    name = step["name"]
    if name == "parity":
        worst = {}
        for case in result["cases"]:
            kind = case["case"].split()[0]
            worst[kind] = max(worst.get(kind, 0.0), case["max_rel_err"])
        errors = ", ".join(f"{kind} max rel err {_num(err)}" for kind, err in worst.items())
        passed = sum(c["passed"] for c in result["cases"])
        return f"{'passed' if result['passed'] else 'FAILED'} {passed}/{len(result['cases'])} cases; {errors}"
    if name in ("throughput", "smollm2"):
        return "; ".join(
            f"{g['goal']}: {_num(g['value'])} ({'met' if g['met'] else 'missed'})" for g in result["goals"]
        )
    if name == "inflight":
        return f"overhead {100 * result['overhead']:+.1f}% ({'met' if result['goal']['met'] else 'missed'} <= 5%)"
    if name == "qlora":
        failed = [k for k, ok in result["checks"].items() if not ok]
        state = "passed" if result["passed"] else f"FAILED: {', '.join(failed)}"
        return f"{state}; adapters moved {result['adapters_moved']}; {_num(result['score_samples_per_s'])} samples/s"
    if name == "profile":
        top = result["top_ops"][:3]
        return "top ops: " + ", ".join(f"{op['op']} {100 * op['share']:.0f}%" for op in top)
    return ""


def _throughput(result: dict) -> list[str]:
    lines = [
        f"## Throughput: {result['shape']}, {result['tokens_per_row']}-token rows",
        "",
        f"Peak memory: {result['peak_memory']}. Ratios: medians of per-round ratios (paired, interleaved runs).",
        "",
        "| task | batch | rows | samples/s | x loop | x forward | peak MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for task in result["tasks"]:
        if "error" in task:
            lines.append(f"| {task['task']} | {task['batch_size']} | {task['rows']} | {task['error']} | | | |")
            continue
        cells = [task.get(k) for k in ("samples_per_s", "over_loop", "over_forward", "peak_mib")]
        lines.append(
            f"| {task['task']} | {task['batch_size']} | {task['rows']} | " + " | ".join(map(_num, cells)) + " |"
        )
    if result.get("preparation_s") is not None:
        lines += ["", f"Of each score() call, building the Dataset and TRL's preparation of {result['preparation_rows']} "
                  f"rows take {1e3 * result['preparation_s']:.0f} ms (no model work)."]  # fmt: skip
    if result.get("stopped_early"):
        lines += ["", result["stopped_early"]]
    return lines


def _inflight(result: dict) -> list[str]:
    rates, peaks = result["steps_per_s"], result["peak_mib"]
    return [
        f"## In-flight: {result['shape']} {result['dtype']}, batch {result['batch_size']}, "
        f"{result['steps']} steps per run, {len(result['runs']['sft'])} alternating pairs",
        "",
        "| trainer | steps/s | peak MiB |",
        "| --- | ---: | ---: |",
        f"| SFTTrainer | {_num(rates['sft'], 3)} | {_num(peaks['sft'])} |",
        f"| ResonanceTrainer(inflight) | {_num(rates['inflight'], 3)} | {_num(peaks['inflight'])} |",
        "",
        f"Overhead per step: {100 * result['overhead']:+.1f}% (median of the paired ratios).",
    ]


def markdown_report(payload: dict) -> str:
    info = payload["machine"]
    lines = [
        f"# GPU check ({payload['mode']}): {info['device_name']}",
        "",
        f"torch {info['torch']}, {info['torch_threads']} torch thread(s), device `{info['device']}`, "
        f"{info['platform']}; " + ", ".join(f"{k} {v}" for k, v in payload["versions"].items()),
        f"Wall time {payload['wall_s']:.1f} s (imports included) of a {payload['budget_s']:.0f} s budget."
        + (
            " Smoke run: toy shapes, so its figures check the code paths, not the goals."
            if payload["mode"] == "smoke"
            else ""
        ),
        "",
        "| step | status | wall s | result |",
        "| --- | --- | ---: | --- |",
    ]
    for step in payload["steps"]:
        lines.append(f"| {step['name']} | {step['status']} | {step['wall_s']:.1f} | {_summary(step)} |")
    results = {s["name"]: s["result"] for s in payload["steps"] if s["status"] == "measured"}
    if "parity" in results:
        lines += ["", "## Parity: engine vs literal loop (max relative error over rows)", "",
                  "| arch | case | row lengths | max rel err | tolerance | passed |",
                  "| --- | --- | --- | ---: | ---: | --- |"]  # fmt: skip
        for c in results["parity"]["cases"]:
            lines.append(
                f"| {c['arch']} | {c['case']} | {c['row_lengths']} | {_num(c['max_rel_err'])} | {c['tolerance']:g} "
                f"| {c['passed']} |"
            )
    for name in ("throughput", "smollm2"):
        if name in results:
            lines += ["", *_throughput(results[name])]
    if "inflight" in results:
        lines += ["", *_inflight(results["inflight"])]
    if "profile" in results:
        lines += ["", f"## Profile: engine bf16, batch {results['profile']['batch_size']}", "", "```",
                  results["profile"]["table"].rstrip(), "```"]  # fmt: skip
    return "\n".join(lines) + "\n"
