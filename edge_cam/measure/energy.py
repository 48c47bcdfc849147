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

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import EdgeCamError
from .meters import Ina2xxHwmonMeter, Ina3221HwmonMeter, Ina3221IioMeter, PmicMeter, RaplMeter, TegrastatsMeter
from .power_readings import Meter, Sample, counter_delta_uj, total_w

__all__ = ["Ina2xxHwmonMeter", "Ina3221HwmonMeter", "Ina3221IioMeter", "Measurement", "Meter", "PmicMeter",
           "RaplMeter", "Sample", "TegrastatsMeter", "counter_delta_uj", "describe_unavailable", "detect",
           "integrate_j", "measure", "total_w"]


def _backends(root: str | Path) -> list[Callable[[], Meter]]:
    # Dedicated rail monitors first; an INA2xx someone wired up measures what they care about.
    # tegrastats reads the same INA3221 as sysfs, so it only helps when sysfs is unreadable.
    return [lambda: Ina3221HwmonMeter(root), lambda: Ina3221IioMeter(root), lambda: Ina2xxHwmonMeter(root),
            TegrastatsMeter, PmicMeter, lambda: RaplMeter(root)]


def _probe(root: str | Path) -> tuple[Meter | None, list[str]]:
    reasons: list[str] = []
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
