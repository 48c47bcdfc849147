"""The power meters edge-cam can read (see energy.py for the order detect() tries them)."""
from __future__ import annotations

import re
import shutil
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Callable

from ..errors import EdgeCamError
from . import power_readings as pr
from .power_readings import Meter, Sample


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
            files = pr.read_files(d)
            try:
                found = self.parse(files)
            except EdgeCamError as e:
                raise EdgeCamError(f"{d}: {e}") from None
            for rail, watts in found.items():
                pr.add_rail(rails, rail, watts)
        return pr.power_sample(rails, self.name)


class Ina3221HwmonMeter(_SysfsMeter):
    kind = "INA3221 hwmon"
    parse = staticmethod(pr.parse_ina3221_hwmon)

    def __init__(self, root: str | Path = "/") -> None:
        super().__init__(pr.hwmon_dirs(root, lambda n: n == "ina3221", driver="ina3221"),
                         Path(root, "sys/class/hwmon"))


class Ina3221IioMeter(_SysfsMeter):
    kind = "INA3221 iio device"
    parse = staticmethod(pr.parse_ina3221_iio)

    def __init__(self, root: str | Path = "/") -> None:
        where = Path(root, "sys/bus/i2c/drivers/ina3221x")
        super().__init__(pr.unique_dirs(where.glob("*/iio:device*")), where)


class Ina2xxHwmonMeter(_SysfsMeter):
    kind = "INA2xx hwmon"
    parse = staticmethod(pr.parse_ina2xx_hwmon)

    def __init__(self, root: str | Path = "/") -> None:
        super().__init__(pr.hwmon_dirs(root, pr.INA2XX_NAMES.__contains__), Path(root, "sys/class/hwmon"))


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
        rails = pr.parse_tegrastats(line)
        if not rails:
            raise EdgeCamError(f"tegrastats printed no power rails: {line.strip()[:200]!r}.")
        return pr.power_sample(rails, self.name)

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
        rails = pr.parse_pmic_read_adc(proc.stdout)
        if proc.returncode != 0 or not rails:
            said = (proc.stderr or proc.stdout).strip().splitlines()
            detail = f" ({said[-1][:200]})" if said else ""
            raise EdgeCamError(f"{self.name} reported no rail with both volts and amps{detail}; "
                               "it needs a Raspberry Pi 5.")
        return pr.power_sample(rails, self.name)


class RaplMeter(Meter):
    """x86 RAPL package energy from powercap; the counters wrap at max_energy_range_uj. Since
    Linux 5.10 energy_uj is readable by root only."""

    def __init__(self, root: str | Path = "/") -> None:
        where = Path(root, "sys/class/powercap")
        # intel-rapl:N are packages; intel-rapl:N:M (core, uncore, dram) lie inside them, and a
        # "psys" zone covers the whole platform, so only package zones add up without overlap.
        zones = [d for d in pr.unique_dirs(where.glob("intel-rapl:*"))
                 if re.fullmatch(r"intel-rapl:\d+", d.name) and pr.read_text(d / "name").startswith("package")]
        if not zones:
            raise EdgeCamError(f"no intel-rapl package zone under {where}.")
        self.zones = zones
        self.name = "RAPL " + " + ".join(pr.read_text(d / "name") for d in zones)

    def read(self) -> Sample:
        counters = []
        for d in self.zones:
            files = {n: pr.read_text(d / n) for n in ("energy_uj", "max_energy_range_uj")}
            try:
                counters.append(pr.parse_rapl_zone(files))
            except EdgeCamError as e:
                raise EdgeCamError(f"{d}: {e}") from None
        return Sample(counters=tuple(counters))


# ---- detection ---------------------------------------------------------------------------------
