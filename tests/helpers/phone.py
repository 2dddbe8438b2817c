"""A fake Android phone for `profile --on adb`: an ``adb`` that maps the phone's paths into a directory, and the
three benchmark tools printing their real output formats (as the tools' public documentation and sources show
them) with numbers chosen here. No phone is attached to this machine; the README says what this does not prove.

The tools check the model file's identifier (``TFL3``, ``ET12``, an ONNX protobuf) the way the real ones refuse
a wrong file, and while "running" they raise the battery's current, so the meter sees a load above idle.
"""

from __future__ import annotations

import json
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

ADB = r"""
import os, shutil, subprocess, sys
root, serials = os.environ["FAKE_PHONE_ROOT"], os.environ["FAKE_PHONE_SERIALS"].split(",")
args = sys.argv[1:]
serial = None
if args[:1] == ["-s"]:
    serial, args = args[1], args[2:]
if serial is None and len(serials) > 1:
    sys.exit(print("adb: error: more than one device/emulator", file=sys.stderr) or 1)
if serial is not None and serial not in serials:
    sys.exit(print(f"adb: device '{serial}' not found", file=sys.stderr) or 1)
def phone(path):
    return root + path if path.startswith("/") else path
def mapped(text):
    for prefix in ("/data/local/tmp", "/sys/class/power_supply"):
        text = text.replace(prefix, root + prefix)
    return text
if args[0] == "push":
    os.makedirs(os.path.dirname(phone(args[2])), exist_ok=True)
    shutil.copy(args[1], phone(args[2]))
    print(f"{args[1]}: 1 file pushed, 0 skipped.")
elif args[0] == "pull":
    if not os.path.exists(phone(args[1])):
        sys.exit(print(f"adb: error: failed to stat remote object '{args[1]}': No such file or directory",
                       file=sys.stderr) or 1)
    shutil.copy(phone(args[1]), args[2])
elif args[0] == "shell":
    env = {**os.environ, "PATH": root + "/system/bin:" + os.environ["PATH"]}
    sys.exit(subprocess.run(["sh", "-c", mapped(" ".join(args[1:]))], env=env).returncode)
else:
    sys.exit(print(f"adb: unknown command {args[0]}", file=sys.stderr) or 1)
"""

GETPROP = r"""
import json, os, sys
props = json.load(open(os.environ["FAKE_PHONE_ROOT"] + "/props.json"))
print(props.get(sys.argv[1], ""))
"""

# Shared by the tools: the model's identifier, and the battery's current raised while the tool "runs".
COMMON = r"""
import os, sys, time
root = os.environ["FAKE_PHONE_ROOT"]
battery = root + "/sys/class/power_supply/battery/current_now"
def check_model(path, magic):
    data = open(path, "rb").read(8) if os.path.exists(path) else b""
    if (magic == b"onnx" and data[:1] != b"\x08") or (magic != b"onnx" and data[4:8] != magic):
        sys.exit(print(f"ERROR: could not load model {path}", file=sys.stderr) or 1)
def busy(seconds):
    idle = open(battery).read()
    open(battery, "w").write("-900000\n")  # sysfs values end with a newline
    time.sleep(seconds)
    open(battery, "w").write(idle)
def flag(name, default=None):
    for a in sys.argv[1:]:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return default
"""

BENCHMARK_MODEL = (
    COMMON
    + r"""
model, runs, warmup = flag("graph"), int(flag("num_runs", "50")), int(flag("warmup_runs", "1"))
open(root + "/benchmark_model.args", "w").write(" ".join(sys.argv[1:]))
print("INFO: STARTING!")
print(f"INFO: Num runs: [{runs}]")
print(f"INFO: Graph: [{model}]")
check_model(model, b"TFL3")
print(f"INFO: Loaded model {model}")
print("INFO: Initialized TensorFlow Lite runtime.")
print("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
print("INFO: Initialized session in 3.217ms.")
RUNNING = ("INFO: Running benchmark for at least {} iterations and at least 0 seconds but terminate if exceeding "
           "150 seconds.")
print(RUNNING.format(warmup))
print(f"INFO: count={warmup} first=812 curr=402 min=398 max=812 avg=470.2 std=120 p5=398 median=410 p95=812")
print()
busy(0.8)
print(RUNNING.format(runs))
print(f"INFO: count={runs} first=405 curr=401 min=380 max=520 avg=410.5 std=22 p5=385 median=404 p95=470")
print()
print("INFO: Inference timings in us: Init: 3217, First inference: 812, Warmup (avg): 470.2, Inference (avg): 410.5")
print("INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to "
      "the actual memory footprint of the model at runtime. Take the information at your discretion.")
print("INFO: Memory footprint delta from the start of the tool (MB): init=2.5 overall=3.75")
print("INFO: Peak memory footprint (MB): init=10.25 overall=11.5")
"""
)

PERF_TEST = (
    COMMON
    + r"""
args = sys.argv[1:]
runs = int(args[args.index("-r") + 1])
model, result = args[-2], args[-1]
open(root + "/perf_test.args", "w").write(" ".join(args))
check_model(model, b"onnx")
busy(0.8)
times = [0.0004 + 0.00001 * (i % 7) for i in range(runs)]
with open(result, "a") as fh:
    for i, t in enumerate(times):
        fh.write(f"model,{t},23592960,98,{i}\n")
print("Session creation time cost: 0.0123 s")
print("First inference time cost: 2 ms")
print(f"Total inference time cost: {sum(times)} s")
print(f"Total inference requests: {runs}")
print(f"Average inference time cost total: {sum(times) / runs * 1e3:.6f} ms")
print(f"Total inference run time: {sum(times) + 0.001} s")
print(f"Number of inferences per second: {runs / (sum(times) + 0.001):.1f} ")
print("Avg CPU usage: 98 %")
print("Peak working set size: 23592960 bytes")
print("Avg CPU usage:98\nPeak working set size:23592960\nRuns:" + str(runs))
"""
)

EXECUTOR_RUNNER = (
    COMMON
    + r"""
model, n = flag("model_path"), int(flag("num_executions", "1"))
with open(root + "/executor_runner.args", "a") as fh:
    fh.write(" ".join(sys.argv[1:]) + "\n")
log = lambda t, line, msg: print(f"I 00:00:{t:09.6f} executorch:executor_runner.cpp:{line}] {msg}")
check_model(model, b"ET12")
log(0.000123, 180, f"Model file {model} is loaded.")
log(0.000140, 189, "Using method forward")
log(0.000150, 236, "Setting up planned buffer 0, size 1536.")
log(0.004150, 259, "Method loaded.")
log(0.004300, 270, "Inputs prepared.")
if n > 1:
    busy(0.8)
total = 5.0 if n == 1 else 0.5 * n
log(0.0093, 290, f"Model executed successfully {n} time(s) in {total:.6f} ms.")
log(0.0094, 299, "1 outputs: ")
print("Output 0: tensor(sizes=[1, 10], [0.1, 0.2, ...])")
"""
)

PROPS = {"ro.product.model": "Pixel 7", "ro.product.cpu.abi": "arm64-v8a", "ro.build.version.release": "14",
         "ro.soc.model": "Tensor G2", "ro.board.platform": "gs201"}  # fmt: skip


@dataclass(frozen=True)
class FakePhone:
    root: Path
    adb: Path
    serials: tuple[str, ...]

    def env(self) -> dict[str, str]:
        return {"EDGEKIT_ADB": str(self.adb), "FAKE_PHONE_ROOT": str(self.root),
                "FAKE_PHONE_SERIALS": ",".join(self.serials)}  # fmt: skip

    def args(self, tool: str) -> str:
        return (self.root / f"{tool}.args").read_text()


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def fake_phone(root: Path, serials: tuple[str, ...] = ("emulator-5554",), tools: bool = True) -> FakePhone:
    """A phone under ``root`` whose tools live in /data/local/tmp; set its env() before calling edgekit."""
    (root / "props.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "props.json").write_text(json.dumps(PROPS))
    battery = root / "sys/class/power_supply/battery"
    battery.mkdir(parents=True)
    (battery / "current_now").write_text("-350000\n")  # microamps, negative while discharging on many phones
    (battery / "voltage_now").write_text("3900000\n")  # microvolts
    _script(root / "system/bin/getprop", GETPROP)
    if tools:
        for name, body in (("benchmark_model", BENCHMARK_MODEL), ("onnxruntime_perf_test", PERF_TEST),
                           ("executor_runner", EXECUTOR_RUNNER)):  # fmt: skip
            _script(root / "data/local/tmp" / name, body)
    adb = _script(root.parent / f"{root.name}-adb", ADB)
    return FakePhone(root, adb, serials)
