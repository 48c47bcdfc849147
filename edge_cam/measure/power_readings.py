"""Readings of the boards' power meters: the sysfs files, tegrastats lines and PMIC dumps each
meter reads, parsed into watts per rail (pure functions, tested on captured text), and the
Sample/Meter types every meter shares. The meters themselves are in meters.py."""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

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


def add_rail(rails: dict[str, float], name: str, watts: float) -> None:
    # Two chips may use the same label; keep both rather than silently dropping one.
    key, n = name, 1
    while key in rails:
        n += 1
        key = f"{name}#{n}"
    rails[key] = watts


def power_sample(rails: dict[str, float], source: str) -> Sample:
    if not rails:
        raise EdgeCamError(f"{source} reported no power rails.")
    return Sample(watts=total_w(rails), rails=rails)


def number(files: Mapping[str, str], key: str, kind: Callable[[str], float] = float) -> float:
    text = files[key]
    try:
        return kind(text)
    except ValueError:
        raise EdgeCamError(f"{key} holds {text.strip()!r}, not a number.") from None


def read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except PermissionError:
        raise EdgeCamError(f"cannot read {path} (permission denied: run as root or `chmod o+r` it).") from None
    except OSError as e:
        raise EdgeCamError(f"cannot read {path} ({e.strerror or e}).") from None


# Only the attributes we parse: a hwmon folder also holds write-only and slow-to-read files.
_SYSFS_FILE = re.compile(r"name|(in|curr|power)\d+_(input|label|enable)|rail_name_\d+|in_power\d+_input")


def read_files(folder: Path) -> dict[str, str]:
    try:
        names = sorted(p.name for p in folder.iterdir() if _SYSFS_FILE.fullmatch(p.name))
    except OSError as e:
        raise EdgeCamError(f"cannot list {folder} ({e.strerror or e}).") from None
    return {n: read_text(folder / n) for n in names}


def unique_dirs(paths: Iterator[Path]) -> list[Path]:
    # /sys/class/hwmon/hwmonN links to the device folder that the driver path also reaches.
    seen: dict[Path, Path] = {}
    for p in paths:
        if p.is_dir():
            seen.setdefault(p.resolve(), p)
    return sorted(seen.values())


def hwmon_dirs(root: str | Path, names: Callable[[str], bool], driver: str | None = None) -> list[Path]:
    base = Path(root)
    candidates = list(base.glob("sys/class/hwmon/hwmon*"))
    if driver:
        candidates += base.glob(f"sys/bus/i2c/drivers/{driver}/*/hwmon/hwmon*")
    found = []
    for d in unique_dirs(iter(candidates)):
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
        add_rail(rails, label, number(files, f"in{n}_input") * number(files, f"curr{n}_input") / 1e6)
    return rails


def parse_ina3221_iio(files: Mapping[str, str]) -> dict[str, float]:
    """Watts per rail from an older ina3221x iio folder (rail_name_N, in_power{N}_input in mW)."""
    rails: dict[str, float] = {}
    for key in sorted(files):
        m = re.fullmatch(r"in_power(\d+)_input", key)
        if m:
            label = files.get(f"rail_name_{m[1]}", f"in{m[1]}")
            add_rail(rails, label, number(files, key) / 1e3)
    return rails


def parse_ina2xx_hwmon(files: Mapping[str, str]) -> dict[str, float]:
    """Watts from an INA2xx hwmon folder: power1_input (uW), else in1_input mV x curr1_input mA."""
    label = files.get("name", "ina2xx")
    if "power1_input" in files:
        return {label: number(files, "power1_input") / 1e6}
    if "in1_input" in files and "curr1_input" in files:
        return {label: number(files, "in1_input") * number(files, "curr1_input") / 1e6}
    return {}


# "VDD_IN 5123mW/5123mW" (current/average); older releases drop the unit. The lookahead keeps
# "RAM 2448/7772MB" out.
_TEGRASTATS_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")


def parse_tegrastats(line: str) -> dict[str, float]:
    """Watts per rail from one tegrastats line, taking each rail's current (first) value."""
    rails: dict[str, float] = {}
    for m in _TEGRASTATS_RAIL.finditer(line):
        add_rail(rails, m[1], int(m[2]) / 1e3)
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
    return int(number(files, "energy_uj", int)), int(number(files, "max_energy_range_uj", int))


def counter_delta_uj(before: int, after: int, max_range_uj: int) -> int:
    """Energy between two counter readings, assuming at most one wrap in between."""
    return after - before if after >= before else after + max_range_uj - before


# ---- backends ----------------------------------------------------------------------------------
