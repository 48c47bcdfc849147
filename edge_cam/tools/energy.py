"""Power and energy from the board's own meters, behind one interface, for benchmarks that report
average watts and millijoules per frame:

    meter = detect()
    if meter is None:
        print(describe_unavailable())      # why, in one sentence; never a made-up figure
    else:
        with meter, measure(meter) as m:
            n = run_frames()
            m.frames = n
        print(f"{m.average_w:.2f} W, {m.mj_per_frame():.1f} mJ/frame over {m.samples} samples")

Backends, in the order detect() tries them (the first that reads cleanly wins):
  INA3221 hwmon   Jetson Orin/Xavier rail monitors: in{N}_input mV x curr{N}_input mA
  INA3221 iio     older Jetsons (Nano/TX2 kernels): in_power{N}_input mW
  INA2xx hwmon    an INA219/226/260... wired to the board: power1_input uW
  tegrastats      Jetson, when the sysfs files are not readable
  vcgencmd        Raspberry Pi 5 PMIC (pmic_read_adc): core and SoC rails only, not the 5 V input
  RAPL            x86 packages (powercap energy_uj), a cumulative counter that wraps

A power meter is sampled by a background thread and integrated over time (trapezoid rule). An
energy counter only needs its first and last readings, but is still sampled every `interval` so
each wrap is seen. A counter that wraps twice between two samples is undercounted by a whole
range and no reading can tell: RAPL's range is ~262 kJ (over an hour at package power), so this
only happens if the process is stopped (SIGSTOP, suspend) for that long.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping

from ..errors import EdgeCamError

# A rail that feeds the whole board already includes every other rail: summing would double count.
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
INA2XX_NAMES = frozenset({"ina209", "ina219", "ina220", "ina226", "ina230", "ina231", "ina234",
                          "ina237", "ina238", "ina260", "ina2xx"})


@dataclass(frozen=True)
class Sample:
    """One reading: instantaneous power (`watts`) or cumulative energy counters (`counters`)."""
    watts: float | None = None
    rails: Mapping[str, float] = field(default_factory=dict)  # watts per rail, for display
    counters: tuple[tuple[int, int], ...] = ()  # (energy_uj, max_energy_range_uj) per zone

    def __post_init__(self) -> None:
        if (self.watts is None) == (not self.counters):
            raise ValueError("a Sample holds either watts or energy counters")


class Meter:
    """A power or energy meter. Subclasses set `name` and implement read(); close() frees any
    helper process, and a Meter is a context manager that closes itself."""
    name: str = "meter"

    def read(self) -> Sample:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Meter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


# ---- shared helpers ---------------------------------------------------------------------------

def total_w(rails: Mapping[str, float]) -> float:
    """The board's power: its input rail when one is measured, else the sum of the rails."""
    for name in INPUT_RAILS:
        if name in rails:
            return rails[name]
    return sum(rails.values())


def _add_rail(rails: dict[str, float], name: str, watts: float) -> None:
    # Two chips may use the same label; keep both rather than silently dropping one.
    key, n = name, 1
    while key in rails:
        n += 1
        key = f"{name}#{n}"
    rails[key] = watts


def _power_sample(rails: dict[str, float], source: str) -> Sample:
    if not rails:
        raise EdgeCamError(f"{source} reported no power rails.")
    return Sample(watts=total_w(rails), rails=rails)


def _number(files: Mapping[str, str], key: str, kind: Callable[[str], float] = float) -> float:
    text = files[key]
    try:
        return kind(text)
    except ValueError:
        raise EdgeCamError(f"{key} holds {text.strip()!r}, not a number.") from None


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except PermissionError:
        raise EdgeCamError(f"cannot read {path} (permission denied: run as root or `chmod o+r` it).") from None
    except OSError as e:
        raise EdgeCamError(f"cannot read {path} ({e.strerror or e}).") from None


# Only the attributes we parse: a hwmon folder also holds write-only and slow-to-read files.
_SYSFS_FILE = re.compile(r"name|(in|curr|power)\d+_(input|label|enable)|rail_name_\d+|in_power\d+_input")


def _read_files(folder: Path) -> dict[str, str]:
    try:
        names = sorted(p.name for p in folder.iterdir() if _SYSFS_FILE.fullmatch(p.name))
    except OSError as e:
        raise EdgeCamError(f"cannot list {folder} ({e.strerror or e}).") from None
    return {n: _read_text(folder / n) for n in names}


def _unique_dirs(paths: Iterator[Path]) -> list[Path]:
    # /sys/class/hwmon/hwmonN links to the device folder that the driver path also reaches.
    seen: dict[Path, Path] = {}
    for p in paths:
        if p.is_dir():
            seen.setdefault(p.resolve(), p)
    return sorted(seen.values())


def _hwmon_dirs(root: str | Path, names: Callable[[str], bool], driver: str | None = None) -> list[Path]:
    base = Path(root)
    candidates = list(base.glob("sys/class/hwmon/hwmon*"))
    if driver:
        candidates += base.glob(f"sys/bus/i2c/drivers/{driver}/*/hwmon/hwmon*")
    found = []
    for d in _unique_dirs(iter(candidates)):
        try:
            name = (d / "name").read_text().strip()
        except OSError:
            continue  # no readable name: not a chip we know
        if names(name):
            found.append(d)
    return found


# ---- parsers: text in, watts per rail out ------------------------------------------------------

def parse_ina3221_hwmon(files: Mapping[str, str]) -> dict[str, float]:
    """Watts per rail from an ina3221 hwmon folder's {file name: contents}."""
    rails: dict[str, float] = {}
    # The chip has three channels; in4..in7 are shunt voltages and curr4 the summed current.
    for n in (1, 2, 3):
        if f"in{n}_input" not in files or f"curr{n}_input" not in files:
            continue
        label = files.get(f"in{n}_label", f"in{n}")
        if files.get(f"in{n}_enable", "1") == "0" or label == "NC":
            continue
        _add_rail(rails, label, _number(files, f"in{n}_input") * _number(files, f"curr{n}_input") / 1e6)
    return rails


def parse_ina3221_iio(files: Mapping[str, str]) -> dict[str, float]:
    """Watts per rail from an older ina3221x iio folder (rail_name_N, in_power{N}_input in mW)."""
    rails: dict[str, float] = {}
    for key in sorted(files):
        m = re.fullmatch(r"in_power(\d+)_input", key)
        if m:
            label = files.get(f"rail_name_{m[1]}", f"in{m[1]}")
            _add_rail(rails, label, _number(files, key) / 1e3)
    return rails


def parse_ina2xx_hwmon(files: Mapping[str, str]) -> dict[str, float]:
    """Watts from an INA2xx hwmon folder: power1_input (uW), else in1_input mV x curr1_input mA."""
    label = files.get("name", "ina2xx")
    if "power1_input" in files:
        return {label: _number(files, "power1_input") / 1e6}
    if "in1_input" in files and "curr1_input" in files:
        return {label: _number(files, "in1_input") * _number(files, "curr1_input") / 1e6}
    return {}


# "VDD_IN 5123mW/5123mW" (current/average); older releases drop the unit. The lookahead keeps
# "RAM 2448/7772MB" out.
_TEGRASTATS_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")


def parse_tegrastats(line: str) -> dict[str, float]:
    """Watts per rail from one tegrastats line, taking each rail's current (first) value."""
    rails: dict[str, float] = {}
    for m in _TEGRASTATS_RAIL.finditer(line):
        _add_rail(rails, m[1], int(m[2]) / 1e3)
    return rails


_PMIC_LINE = re.compile(r"^\s*(\S+)_([AV]) (?:current|volt)\(\d+\)=([-+0-9.eE]+)[AV]\s*$", re.M)


def parse_pmic_read_adc(text: str) -> dict[str, float]:
    """Watts per rail from `vcgencmd pmic_read_adc`: V x A for each rail that reports both."""
    amps: dict[str, float] = {}
    volts: dict[str, float] = {}
    for m in _PMIC_LINE.finditer(text):
        (amps if m[2] == "A" else volts)[m[1]] = float(m[3])
    return {rail: volts[rail] * a for rail, a in amps.items() if rail in volts}


def parse_rapl_zone(files: Mapping[str, str]) -> tuple[int, int]:
    """(energy_uj, max_energy_range_uj) from a powercap zone's files."""
    # int, not float: counters can pass 2**53.
    return int(_number(files, "energy_uj", int)), int(_number(files, "max_energy_range_uj", int))


def counter_delta_uj(before: int, after: int, max_range_uj: int) -> int:
    """Energy between two counter readings, assuming at most one wrap in between."""
    return after - before if after >= before else after + max_range_uj - before


# ---- backends ----------------------------------------------------------------------------------

class _SysfsMeter(Meter):
    """Rails read from one or more sysfs folders; subclasses say where and how to parse."""
    kind = ""
    parse: Callable[[Mapping[str, str]], dict[str, float]]

    def __init__(self, dirs: list[Path], where: Path) -> None:
        if not dirs:
            raise EdgeCamError(f"no {self.kind} under {where}.")
        self.dirs = dirs
        self.name = f"{self.kind} ({', '.join(str(d) for d in dirs)})"

    def read(self) -> Sample:
        rails: dict[str, float] = {}
        for d in self.dirs:
            files = _read_files(d)
            try:
                found = self.parse(files)
            except EdgeCamError as e:
                raise EdgeCamError(f"{d}: {e}") from None
            for rail, watts in found.items():
                _add_rail(rails, rail, watts)
        return _power_sample(rails, self.name)


class Ina3221HwmonMeter(_SysfsMeter):
    kind = "INA3221 hwmon"
    parse = staticmethod(parse_ina3221_hwmon)

    def __init__(self, root: str | Path = "/") -> None:
        super().__init__(_hwmon_dirs(root, lambda n: n == "ina3221", driver="ina3221"),
                         Path(root, "sys/class/hwmon"))


class Ina3221IioMeter(_SysfsMeter):
    kind = "INA3221 iio device"
    parse = staticmethod(parse_ina3221_iio)

    def __init__(self, root: str | Path = "/") -> None:
        where = Path(root, "sys/bus/i2c/drivers/ina3221x")
        super().__init__(_unique_dirs(where.glob("*/iio:device*")), where)


class Ina2xxHwmonMeter(_SysfsMeter):
    kind = "INA2xx hwmon"
    parse = staticmethod(parse_ina2xx_hwmon)

    def __init__(self, root: str | Path = "/") -> None:
        super().__init__(_hwmon_dirs(root, INA2XX_NAMES.__contains__), Path(root, "sys/class/hwmon"))


def _which(command: str) -> str:
    path = shutil.which(command)
    if path is None:
        raise EdgeCamError(f"no {command} on PATH.")
    return path


class TegrastatsMeter(Meter):
    """Runs `tegrastats --interval MS` and parses its newest line. A reading is up to one interval
    old, which is why the default interval is short."""

    def __init__(self, command: str = "tegrastats", interval_ms: int = 50, timeout_s: float = 3.0) -> None:
        self.name = "tegrastats"
        self.argv = [_which(command), "--interval", str(interval_ms)]
        self.timeout_s = max(timeout_s, 3 * interval_ms / 1e3)
        self._proc: subprocess.Popen[str] | None = None
        self._line: str | None = None
        self._ended = False
        self._cond = threading.Condition()

    def _start(self) -> None:
        self._line, self._ended = None, False
        try:
            # stderr joins stdout so that an error message reaches the user in place of a reading.
            self._proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, text=True, bufsize=1)
        except OSError as e:
            raise EdgeCamError(f"cannot run {self.argv[0]} ({e.strerror or e}).") from None
        threading.Thread(target=self._follow, args=(self._proc,), daemon=True, name="tegrastats").start()

    def _follow(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        with proc.stdout:
            for line in proc.stdout:
                if line.strip():
                    with self._cond:
                        if proc is self._proc:  # a closed-and-restarted meter ignores the old process
                            self._line = line
                            self._cond.notify_all()
        with self._cond:
            if proc is self._proc:
                self._ended = True
                self._cond.notify_all()

    def read(self) -> Sample:
        if self._proc is None:
            self._start()
        with self._cond:
            self._cond.wait_for(lambda: self._line is not None or self._ended, self.timeout_s)
            line, ended = self._line, self._ended
        if ended:
            # A stopped tegrastats would leave us repeating its last line as if it were current.
            last = f": {line.strip()[:200]!r}" if line else ""
            raise EdgeCamError(f"tegrastats stopped{last}.")
        if line is None:
            raise EdgeCamError(f"tegrastats printed nothing within {self.timeout_s:g} s.")
        rails = parse_tegrastats(line)
        if not rails:
            raise EdgeCamError(f"tegrastats printed no power rails: {line.strip()[:200]!r}.")
        return _power_sample(rails, self.name)

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class PmicMeter(Meter):
    """Raspberry Pi 5: runs `vcgencmd pmic_read_adc` per reading. The PMIC sees the SoC, memory
    and 3V3/1V8 rails but not the 5 V input, so USB devices and the board's losses are missing."""

    def __init__(self, command: str = "vcgencmd", timeout_s: float = 5.0) -> None:
        self.name = "vcgencmd pmic_read_adc"
        self.argv = [_which(command), "pmic_read_adc"]
        self.timeout_s = timeout_s

    def read(self) -> Sample:
        try:
            proc = subprocess.run(self.argv, capture_output=True, text=True, timeout=self.timeout_s,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise EdgeCamError(f"{self.name} did not answer within {self.timeout_s:g} s.") from None
        except OSError as e:
            raise EdgeCamError(f"cannot run {self.argv[0]} ({e.strerror or e}).") from None
        rails = parse_pmic_read_adc(proc.stdout)
        if proc.returncode != 0 or not rails:
            said = (proc.stderr or proc.stdout).strip().splitlines()
            detail = f" ({said[-1][:200]})" if said else ""
            raise EdgeCamError(f"{self.name} reported no rail with both volts and amps{detail}; "
                               "it needs a Raspberry Pi 5.")
        return _power_sample(rails, self.name)


class RaplMeter(Meter):
    """x86 RAPL package energy from powercap; the counters wrap at max_energy_range_uj. Since
    Linux 5.10 energy_uj is readable by root only."""

    def __init__(self, root: str | Path = "/") -> None:
        where = Path(root, "sys/class/powercap")
        # intel-rapl:N are packages; intel-rapl:N:M (core, uncore, dram) lie inside them, and a
        # "psys" zone covers the whole platform, so only package zones add up without overlap.
        zones = [d for d in _unique_dirs(where.glob("intel-rapl:*"))
                 if re.fullmatch(r"intel-rapl:\d+", d.name) and _read_text(d / "name").startswith("package")]
        if not zones:
            raise EdgeCamError(f"no intel-rapl package zone under {where}.")
        self.zones = zones
        self.name = "RAPL " + " + ".join(_read_text(d / "name") for d in zones)

    def read(self) -> Sample:
        counters = []
        for d in self.zones:
            files = {n: _read_text(d / n) for n in ("energy_uj", "max_energy_range_uj")}
            try:
                counters.append(parse_rapl_zone(files))
            except EdgeCamError as e:
                raise EdgeCamError(f"{d}: {e}") from None
        return Sample(counters=tuple(counters))


# ---- detection ---------------------------------------------------------------------------------

def _backends(root: str | Path) -> list[Callable[[], Meter]]:
    # Dedicated rail monitors first; an INA2xx someone wired up measures what they care about.
    # tegrastats reads the same INA3221 as sysfs, so it only helps when sysfs is unreadable.
    return [lambda: Ina3221HwmonMeter(root), lambda: Ina3221IioMeter(root), lambda: Ina2xxHwmonMeter(root),
            TegrastatsMeter, PmicMeter, lambda: RaplMeter(root)]


def _probe(root: str | Path) -> tuple[Meter | None, list[str]]:
    reasons = []
    for make in _backends(root):
        meter = None
        try:
            meter = make()
            meter.read()  # a meter that exists but cannot be read is no meter
            return meter, reasons
        except EdgeCamError as e:
            if meter is not None:
                meter.close()
            reasons.append(str(e).rstrip("."))
    return None, reasons


def detect(root: str | Path = "/") -> Meter | None:
    """The first backend that reads cleanly, or None (describe_unavailable() says why). Close the
    meter when done: tegrastats runs as a child process."""
    return _probe(root)[0]


def describe_unavailable(root: str | Path = "/") -> str:
    """One sentence on why no meter could be read, or "" when one can."""
    meter, reasons = _probe(root)
    if meter is not None:
        meter.close()
        return ""
    listed = reasons[0] if len(reasons) == 1 else ", ".join(reasons[:-1]) + ", and " + reasons[-1]
    return f"No power meter could be read: {listed}."


# ---- measuring ---------------------------------------------------------------------------------

@dataclass
class Measurement:
    """Set `frames` inside the `with measure(...)` block; the figures are final once it exits."""
    meter_name: str
    frames: int = 0
    elapsed_s: float = 0.0
    energy_j: float = 0.0
    samples: int = 0

    @property
    def average_w(self) -> float:
        if self.elapsed_s <= 0:
            raise EdgeCamError("the measurement has no duration: read it after the `with` block.")
        return self.energy_j / self.elapsed_s

    def mj_per_frame(self, frames: int | None = None) -> float:
        n = self.frames if frames is None else frames
        if n <= 0:
            raise EdgeCamError("mJ per frame needs a frame count: set `m.frames` or pass it.")
        return self.energy_j * 1e3 / n


def integrate_j(readings: list[tuple[float, Sample]]) -> float:
    """Joules over time-stamped samples: trapezoid over watts, or summed counter deltas."""
    energy = 0.0
    for (t0, a), (t1, b) in zip(readings, readings[1:]):
        if a.watts is not None and b.watts is not None:
            energy += (a.watts + b.watts) / 2 * (t1 - t0)
        else:
            energy += sum(counter_delta_uj(e0, e1, rng)
                          for (e0, _), (e1, rng) in zip(a.counters, b.counters)) / 1e6
    return energy


def _reading(meter: Meter) -> tuple[float, Sample]:
    # Stamped at the middle of the read: a vcgencmd call takes tens of milliseconds.
    t0 = time.perf_counter()
    sample = meter.read()
    return (t0 + time.perf_counter()) / 2, sample


@contextmanager
def measure(meter: Meter, interval: float = 0.05) -> Iterator[Measurement]:
    """`with measure(meter) as m:` samples `meter` every `interval` s in a background thread while
    the block runs; afterwards `m` holds energy_j, elapsed_s, average_w and samples. A reading that
    fails inside the thread is raised when the block ends (unless the block itself raised)."""
    readings = [_reading(meter)]  # in the caller's thread, so an unreadable meter fails right here
    stop = threading.Event()
    errors: list[Exception] = []

    def sample() -> None:
        while not stop.wait(interval):
            try:
                readings.append(_reading(meter))
            except Exception as e:  # handed to the caller's thread below
                errors.append(e)
                return

    thread = threading.Thread(target=sample, daemon=True, name="energy-sampler")
    thread.start()
    result = Measurement(meter.name)
    try:
        yield result
    finally:
        stop.set()
        thread.join()
    if errors:
        raise errors[0]
    readings.append(_reading(meter))
    result.samples = len(readings)
    result.elapsed_s = readings[-1][0] - readings[0][0]
    result.energy_j = integrate_j(readings)
