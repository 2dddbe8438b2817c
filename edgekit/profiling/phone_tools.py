"""The benchmark tool a phone runs for each format, how to call it, and how to read what it prints.

The parsers follow the tools' public output formats:

- LiteRT ``benchmark_model``: ``Initialized session in <ms>ms.``, then one ``count= first= curr= min= max= avg=
  std=`` line (microseconds; newer builds add ``p5= median= p95=``) for the warm-up and one for the timed runs,
  ``Inference timings in us: Init: ..., First inference: ..., Warmup (avg): ..., Inference (avg): ...`` and the
  memory lines (``Memory footprint delta ... (MB): init= overall=``, ``Peak memory footprint (MB): init=
  overall=``). It keeps no per-run times: the report carries the summary it printed.
- ONNX Runtime ``onnxruntime_perf_test``: ``Session creation time cost: <s> s``, ``First inference time cost:
  <ms> ms``, ``Peak working set size: <bytes> bytes``, and, given a result file, one CSV line per run
  (``model,seconds,peak working set,cpu %,run``): every sample. It always runs one warm-up iteration of its own.
- ExecuTorch ``executor_runner``: log lines ``<L> HH:MM:SS.micro executorch:<file>:<line>] <message>``, among
  them ``Method loaded.`` and ``Model executed successfully <n> time(s) in <ms> ms.``: only the total, so the
  first inference is a second one-execution run and the mean is total / n (it has no warm-up option).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from edgekit.errors import EdgekitError
from edgekit.profiling.latency import LatencyStats, ToolSummary
from edgekit.registry import Registry


class ToolOutputError(EdgekitError):
    exit_code = 2


@dataclass(frozen=True)
class ToolRun:
    """What one tool invocation told us about one graph."""

    load_ms: float
    first_inference_ms: float
    latency: LatencyStats
    peak_rss_bytes: int | None
    model_memory_bytes: int | None


@dataclass(frozen=True)
class ToolCall:
    """The shell commands for one graph: each is run on the phone and its output handed to the parser."""

    commands: tuple[str, ...]
    result_file: str | None = None  # pulled after the commands (ONNX Runtime's per-run CSV)


@dataclass(frozen=True)
class PhoneTool:
    format: str
    names: tuple[str, ...]  # binary names, first match wins
    runtime: str  # how the report names the runtime
    call: Callable[[str, str, int, int, int | None, str | None], ToolCall]  # tool, model, runs, warmup, threads, entry
    parse: Callable[[list[str], str | None, int], ToolRun]  # outputs per command, result file text, runs


def _number(pattern: str, text: str, what: str, tool: str) -> float:
    found = re.findall(pattern, text)
    if not found:
        raise ToolOutputError(f"{tool} printed no {what}: is it the tool edgekit expects? (output: {text[-200:]!r})")
    return float(found[-1])


# --- LiteRT benchmark_model ---------------------------------------------------------------------------------------

_STATS = re.compile(r"count=(\d+) first=([\d.]+) curr=([\d.]+) min=([\d.]+) max=([\d.]+) avg=([\d.]+) std=([\d.]+)"
                    r"(?: p5=([\d.]+) median=([\d.]+) p95=([\d.]+))?")  # fmt: skip


def benchmark_model_call(tool: str, model: str, runs: int, warmup: int, threads: int | None, entry: str | None):
    args = [f"--graph={model}", f"--num_runs={runs}", f"--warmup_runs={max(warmup, 1)}", "--min_secs=0",
            "--warmup_min_secs=0", "--report_peak_memory_footprint=true"]  # fmt: skip
    if threads:
        args.append(f"--num_threads={threads}")
    if entry:
        args.append(f"--signature_to_run_for={entry}")
    return ToolCall((" ".join([tool, *args]) + " 2>&1",))


def parse_benchmark_model(outputs: list[str], _result: str | None, runs: int) -> ToolRun:
    text, tool = outputs[0], "benchmark_model"
    stats = _STATS.findall(text)
    if not stats:
        raise ToolOutputError(f"{tool} printed no `count= ... avg= std=` line (output: {text[-200:]!r})")
    count, _first, _curr, low, high, avg, std, p5, median, p95 = stats[-1]  # the last line is the timed runs
    us = 1e-3
    percentiles = ((5.0, float(p5) * us), (50.0, float(median) * us), (95.0, float(p95) * us)) if median else ()
    summary = ToolSummary(tool, int(count), float(avg) * us, float(std) * us, float(low) * us, float(high) * us,
                          percentiles)  # fmt: skip
    load_ms = _number(r"Initialized session in ([\d.]+) ?ms", text, "session initialisation time", tool)
    first_us = _number(r"First inference: ([\d.]+)", text, "first inference time", tool)
    peak = re.findall(r"Peak memory footprint \(MB\): init=[\d.]+ overall=([\d.]+)", text)
    init = re.findall(r"Memory footprint delta from the start of the tool \(MB\): init=([\d.]+)", text)
    mib = 1 << 20
    return ToolRun(load_ms, first_us * us, LatencyStats((), summary), int(float(peak[-1]) * mib) if peak else None,
                   int(float(init[-1]) * mib) if init else None)  # fmt: skip


# --- ONNX Runtime onnxruntime_perf_test ---------------------------------------------------------------------------


def perf_test_call(tool: str, model: str, runs: int, _warmup: int, threads: int | None, _entry: str | None):
    result = f"{model}.runs.csv"
    threads_arg = f" -x {threads}" if threads else ""
    return ToolCall((f"rm -f {result}; {tool} -I -m times -r {runs}{threads_arg} -e cpu {model} {result} 2>&1",),
                    result_file=result)  # fmt: skip


def parse_perf_test(outputs: list[str], result: str | None, runs: int) -> ToolRun:
    text, tool = outputs[0], "onnxruntime_perf_test"
    load_ms = _number(r"Session creation time cost: ([\d.eE+-]+) s", text, "session creation time", tool) * 1e3
    first_ms = _number(r"First inference time cost: ([\d.]+) ms", text, "first inference time", tool)
    peak = re.findall(r"Peak working set size: (\d+) bytes", text)
    samples = []
    for line in (result or "").splitlines():
        fields = line.split(",")
        if len(fields) == 5:
            try:
                samples.append(float(fields[1]) * 1e3)
            except ValueError:
                continue
    if len(samples) != runs:
        raise ToolOutputError(f"{tool} wrote {len(samples)} per-run times to its result file, {runs} were asked for")
    return ToolRun(load_ms, first_ms, LatencyStats(tuple(samples)), int(peak[-1]) if peak else None, None)


# --- ExecuTorch executor_runner -----------------------------------------------------------------------------------

_LOG_TIME = re.compile(r"^[DIEF] (\d+):(\d+):(\d+)\.(\d+) executorch:", re.M)


def executor_runner_call(tool: str, model: str, runs: int, _warmup: int, _threads: int | None, entry: str | None):
    if entry not in (None, "forward"):
        raise ToolOutputError(f"executor_runner runs a program's first method only, not {entry!r}: profile this "
                              "bundle on a worker instead (--on NAME)")  # fmt: skip
    return ToolCall((f"{tool} --model_path={model} --num_executions=1 2>&1",
                     f"{tool} --model_path={model} --num_executions={runs} 2>&1"))  # fmt: skip


def _log_seconds(line_match: re.Match) -> float:
    h, m, s, micro = line_match.groups()
    return int(h) * 3600 + int(m) * 60 + int(s) + int(micro) / 10 ** len(micro)


def parse_executor_runner(outputs: list[str], _result: str | None, runs: int) -> ToolRun:
    first_text, timed_text = outputs
    tool = "executor_runner"
    pattern = r"Model executed successfully (\d+) time\(s\) in ([\d.]+) ms"
    first = re.findall(pattern, first_text)
    timed = re.findall(pattern, timed_text)
    if not first or not timed:
        raise ToolOutputError(f"{tool} printed no `Model executed successfully n time(s) in x ms` line "
                              f"(output: {(timed_text or first_text)[-200:]!r})")  # fmt: skip
    count, total_ms = int(timed[-1][0]), float(timed[-1][1])
    if count != runs:
        raise ToolOutputError(f"{tool} ran {count} time(s), {runs} were asked for")
    stamps = list(_LOG_TIME.finditer(first_text))
    loaded = first_text.find("Method loaded.")
    load_ms = 0.0
    if stamps and loaded >= 0:
        before = [m for m in stamps if m.start() < loaded]
        load_ms = (_log_seconds(before[-1]) - _log_seconds(stamps[0])) * 1e3 if before else 0.0
    summary = ToolSummary(tool, count, total_ms / count)
    return ToolRun(load_ms, float(first[-1][1]), LatencyStats((), summary), None, None)


PHONE_TOOLS: Registry[PhoneTool] = Registry("phone benchmark tool")
for _tool in (
    PhoneTool("tflite", ("benchmark_model", "android_aarch64_benchmark_model"), "LiteRT benchmark_model",
              benchmark_model_call, parse_benchmark_model),
    PhoneTool("onnx", ("onnxruntime_perf_test",), "ONNX Runtime onnxruntime_perf_test", perf_test_call,
              parse_perf_test),
    PhoneTool("pte", ("executor_runner", "xnn_executor_runner"), "ExecuTorch executor_runner", executor_runner_call,
              parse_executor_runner),
):  # fmt: skip
    PHONE_TOOLS.add(_tool.format, _tool)
