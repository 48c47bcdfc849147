"""edge_cam.measure.energy: parsers on sample outputs, backends on fake sysfs trees and fake tools on PATH,
and the sampling/integration against meters whose power is known."""
from __future__ import annotations

import os
import pathlib
import re
import sys
import time

import pytest

from edge_cam.errors import EdgeCamError
from edge_cam.measure import energy
from edge_cam.measure import power_readings as readings
from edge_cam.measure.energy import Meter, Sample, describe_unavailable, detect, measure

TEGRASTATS_ORIN = ("12-01-2024 10:00:00 RAM 2448/7772MB (lfb 2x4MB) SWAP 0/3886MB (cached 0MB) "
                   "CPU [2%@729,1%@729,off,off,0%@729,0%@729] EMC_FREQ 0% GR3D_FREQ 0% cpu@46.5C "
                   "soc2@45.2C VDD_IN 5123mW/5123mW VDD_CPU_GPU_CV 1038mW/1134mW VDD_SOC 1439mW/1439mW")
TEGRASTATS_OLD = ("RAM 1510/3956MB (lfb 106x4MB) IRAM 0/252kB(lfb 252kB) CPU [3%@102,2%@102] APE 25 "
                  "PLL@25C VDD_IN 1038/1134 VDD_SYS_GPU 152/152 VDD_SYS_CPU 300/310")
TEGRASTATS_NANO = ("RAM 1510/3956MB (lfb 106x4MB) SWAP 0/1978MB (cached 0MB) CPU [3%@102,2%@102,1%@102,0%@102] "
                   "EMC_FREQ 0%@1600 GR3D_FREQ 0%@76 APE 25 thermal@27.5C POM_5V_IN 2390/2390 "
                   "POM_5V_GPU 0/0 POM_5V_CPU 289/289")
TEGRASTATS_NO_INPUT = "RAM 9000/30536MB VDD_GPU_SOC 2390mW/2390mW VDD_CPU_CV 400mW/420mW VIN_SYS_5V0 1000mW/1000mW"
PMIC_READ_ADC = """\
     3V7_WL_SW_A current(0)=0.00000000A
     3V3_SYS_A current(4)=0.05465700A
     VDD_CORE_A current(7)=0.75012000A
     HDMI_A current(22)=0.02342400A
     3V7_WL_SW_V volt(8)=3.70817600V
     3V3_SYS_V volt(12)=3.31330300V
     VDD_CORE_V volt(15)=0.89369880V
     EXT5V_V volt(24)=5.14080000V
     BATT_V volt(25)=0.00000000V
"""
VDD_CORE_W = 0.89369880 * 0.75012000  # 0.67038...
SYS_3V3_W = 3.31330300 * 0.05465700


# ---- helpers ------------------------------------------------------------------------------------

def write_tree(root: pathlib.Path, files: dict[str, str | int]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{text}\n")


def ina3221_hwmon(root: pathlib.Path, rails: dict[str, tuple[int, int]],
                  base: str = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1") -> None:
    files: dict[str, str | int] = {f"{base}/name": "ina3221"}
    for n, (label, (mv, ma)) in enumerate(rails.items(), 1):
        files |= {f"{base}/in{n}_label": label, f"{base}/in{n}_input": mv, f"{base}/curr{n}_input": ma}
    write_tree(root, files)


def rapl(root: pathlib.Path, energy_uj: int, max_uj: int = 262143328850, zone: str = "intel-rapl:0") -> None:
    d = f"sys/class/powercap/{zone}"
    write_tree(root, {f"{d}/name": "package-0", f"{d}/energy_uj": energy_uj, f"{d}/max_energy_range_uj": max_uj})


def tool(bin_dir: pathlib.Path, name: str, body: str) -> pathlib.Path:
    # A Python script rather than sh: PATH holds only bin_dir, so sleep/cat would not be found.
    path = bin_dir / name
    path.write_text(f"#!{sys.executable}\nimport sys, time\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.fixture(autouse=True)
def bin_dir(tmp_path, monkeypatch) -> pathlib.Path:
    """PATH holds only this folder, so a real tegrastats/vcgencmd never leaks into a test."""
    d = tmp_path / "bin"
    d.mkdir()
    monkeypatch.setenv("PATH", str(d))
    return d


class ConstantMeter(Meter):
    name = "constant"

    def __init__(self, watts: float) -> None:
        self.watts = watts
        self.reads = 0

    def read(self) -> Sample:
        self.reads += 1
        return Sample(watts=self.watts)


class WrappingCounter(Meter):
    """An energy counter at constant power whose range is small enough to wrap several times."""
    name = "wrapping"

    def __init__(self, watts: float, max_uj: int) -> None:
        self.watts, self.max_uj, self.t0 = watts, max_uj, time.perf_counter()

    def read(self) -> Sample:
        uj = int((time.perf_counter() - self.t0) * self.watts * 1e6)
        return Sample(counters=((uj % self.max_uj, self.max_uj),))


# ---- parsers ------------------------------------------------------------------------------------

def test_ina3221_hwmon_parser_multiplies_mv_by_ma_and_ignores_shunt_channels():
    files = {"name": "ina3221", "in1_label": "VDD_IN", "in1_input": "5000", "curr1_input": "1000",
             "in2_label": "VDD_CPU_GPU_CV", "in2_input": "5000", "curr2_input": "200",
             "in3_label": "VDD_SOC", "in3_input": "5000", "curr3_input": "300",
             "in4_input": "40", "curr4_input": "1500"}  # shunt voltage and summed current
    rails = readings.parse_ina3221_hwmon(files)
    assert rails == pytest.approx({"VDD_IN": 5.0, "VDD_CPU_GPU_CV": 1.0, "VDD_SOC": 1.5})
    assert energy.total_w(rails) == pytest.approx(5.0)  # the input rail already holds the others
    del files["in1_label"], files["in1_input"], files["curr1_input"]
    assert energy.total_w(readings.parse_ina3221_hwmon(files)) == pytest.approx(2.5)  # no input rail: sum


def test_ina3221_hwmon_parser_skips_disabled_and_unconnected_channels():
    files = {"in1_label": "VDD_GPU_SOC", "in1_input": "5000", "curr1_input": "400",
             "in2_label": "NC", "in2_input": "0", "curr2_input": "0",
             "in3_label": "VDD_CPU_CV", "in3_input": "5000", "curr3_input": "100", "in3_enable": "0"}
    assert readings.parse_ina3221_hwmon(files) == pytest.approx({"VDD_GPU_SOC": 2.0})


def test_ina3221_iio_parser_reads_milliwatts():
    files = {"rail_name_0": "POM_5V_IN", "in_power0_input": "2390", "rail_name_1": "POM_5V_GPU",
             "in_power1_input": "0", "rail_name_2": "POM_5V_CPU", "in_power2_input": "289"}
    rails = readings.parse_ina3221_iio(files)
    assert rails == pytest.approx({"POM_5V_IN": 2.39, "POM_5V_GPU": 0.0, "POM_5V_CPU": 0.289})
    assert energy.total_w(rails) == pytest.approx(2.39)


@pytest.mark.parametrize("line, rails, total", [
    (TEGRASTATS_ORIN, {"VDD_IN": 5.123, "VDD_CPU_GPU_CV": 1.038, "VDD_SOC": 1.439}, 5.123),
    (TEGRASTATS_OLD, {"VDD_IN": 1.038, "VDD_SYS_GPU": 0.152, "VDD_SYS_CPU": 0.300}, 1.038),
    (TEGRASTATS_NANO, {"POM_5V_IN": 2.39, "POM_5V_GPU": 0.0, "POM_5V_CPU": 0.289}, 2.39),
    (TEGRASTATS_NO_INPUT, {"VDD_GPU_SOC": 2.39, "VDD_CPU_CV": 0.4, "VIN_SYS_5V0": 1.0}, 3.79),
], ids=["orin-mW", "old-no-unit", "nano-POM", "no-input-rail"])
def test_tegrastats_parser_takes_the_current_value_per_rail(line, rails, total):
    parsed = readings.parse_tegrastats(line)
    assert parsed == pytest.approx(rails)  # RAM 2448/7772MB, IRAM 0/252kB are not rails
    assert energy.total_w(parsed) == pytest.approx(total)


def test_pmic_parser_pairs_volts_with_amps():
    assert readings.parse_pmic_read_adc("   VDD_CORE_A current(7)=0.75012000A\n   VDD_CORE_V volt(15)=0.89369880V\n") \
        == pytest.approx({"VDD_CORE": VDD_CORE_W})
    assert VDD_CORE_W == pytest.approx(0.67038, abs=1e-5)
    rails = readings.parse_pmic_read_adc(PMIC_READ_ADC)
    # EXT5V and BATT have no current, HDMI no voltage: left out rather than guessed.
    assert rails == pytest.approx({"3V7_WL_SW": 0.0, "3V3_SYS": SYS_3V3_W, "VDD_CORE": VDD_CORE_W})
    assert energy.total_w(rails) == pytest.approx(VDD_CORE_W + SYS_3V3_W)
    assert readings.parse_pmic_read_adc('error=2 error_msg="Invalid arguments"') == {}


def test_ina2xx_parser_prefers_power_then_volts_times_amps():
    assert readings.parse_ina2xx_hwmon({"name": "ina219", "power1_input": "2500000", "in1_input": "1"}) \
        == pytest.approx({"ina219": 2.5})
    assert readings.parse_ina2xx_hwmon({"name": "ina226", "in1_input": "5000", "curr1_input": "400"}) \
        == pytest.approx({"ina226": 2.0})
    assert readings.parse_ina2xx_hwmon({"name": "ina226", "in1_input": "5000"}) == {}


def test_parsers_reject_malformed_numbers():
    with pytest.raises(EdgeCamError, match="in1_input holds 'abc', not a number"):
        readings.parse_ina3221_hwmon({"in1_input": "abc", "curr1_input": "1"})


def test_rapl_counter_delta_handles_a_wrap():
    assert readings.parse_rapl_zone({"energy_uj": "123", "max_energy_range_uj": "1000"}) == (123, 1000)
    assert energy.counter_delta_uj(100, 400, 1000) == 300
    assert energy.counter_delta_uj(900, 50, 1000) == 150


def test_sample_holds_watts_or_counters():
    with pytest.raises(ValueError):
        Sample()
    with pytest.raises(ValueError):
        Sample(watts=1.0, counters=((1, 2),))


# ---- sysfs backends and detection ---------------------------------------------------------------

def test_ina3221_hwmon_tree(tmp_path):
    ina3221_hwmon(tmp_path, {"VDD_IN": (5000, 1000), "VDD_CPU_GPU_CV": (5000, 200), "VDD_SOC": (5000, 300)})
    meter = detect(tmp_path)
    assert isinstance(meter, energy.Ina3221HwmonMeter)
    sample = meter.read()
    assert sample.watts == pytest.approx(5.0)
    assert sample.rails == pytest.approx({"VDD_IN": 5.0, "VDD_CPU_GPU_CV": 1.0, "VDD_SOC": 1.5})


def test_ina3221_found_through_class_hwmon_and_two_chips_sum(tmp_path):
    ina3221_hwmon(tmp_path, {"GPU": (5000, 200), "CPU": (5000, 100)}, base="sys/class/hwmon/hwmon0")
    ina3221_hwmon(tmp_path, {"SOC": (5000, 300), "CPU": (1000, 1000)}, base="sys/class/hwmon/hwmon2")
    write_tree(tmp_path, {"sys/class/hwmon/hwmon1/name": "nvme", "sys/class/hwmon/hwmon1/temp1_input": 40000})
    meter = energy.Ina3221HwmonMeter(tmp_path)
    assert len(meter.dirs) == 2
    sample = meter.read()
    assert sample.rails == pytest.approx({"GPU": 1.0, "CPU": 0.5, "SOC": 1.5, "CPU#2": 1.0})
    assert sample.watts == pytest.approx(4.0)


def test_ina3221_iio_tree(tmp_path):
    d = "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0"
    write_tree(tmp_path, {f"{d}/rail_name_0": "VDD_IN", f"{d}/in_power0_input": 4200,
                          f"{d}/rail_name_1": "VDD_GPU", f"{d}/in_power1_input": 800})
    meter = detect(tmp_path)
    assert isinstance(meter, energy.Ina3221IioMeter)
    assert meter.read().watts == pytest.approx(4.2)


def test_ina219_tree(tmp_path):
    write_tree(tmp_path, {"sys/class/hwmon/hwmon3/name": "ina219", "sys/class/hwmon/hwmon3/power1_input": 3250000,
                          "sys/class/hwmon/hwmon0/name": "cpu_thermal"})
    meter = detect(tmp_path)
    assert isinstance(meter, energy.Ina2xxHwmonMeter)
    assert meter.read().watts == pytest.approx(3.25)


def test_rapl_tree_sums_packages_only_and_unwraps(tmp_path):
    max_uj = 262143328850
    rapl(tmp_path, max_uj - 1000, max_uj)
    rapl(tmp_path, 5_000_000, max_uj, zone="intel-rapl:1")
    write_tree(tmp_path, {"sys/class/powercap/intel-rapl:0:0/name": "core",
                          "sys/class/powercap/intel-rapl:0:0/energy_uj": 7,
                          "sys/class/powercap/intel-rapl:2/name": "psys",
                          "sys/class/powercap/intel-rapl:2/energy_uj": 9})
    meter = detect(tmp_path)
    assert isinstance(meter, energy.RaplMeter)
    assert [d.name for d in meter.zones] == ["intel-rapl:0", "intel-rapl:1"]
    before = meter.read()
    assert before.watts is None and before.counters == ((max_uj - 1000, max_uj), (5_000_000, max_uj))
    rapl(tmp_path, 4000, max_uj)  # wrapped: 1000 uJ up to the range, then 4000 past it
    rapl(tmp_path, 7_000_000, max_uj, zone="intel-rapl:1")
    after = meter.read()
    assert energy.integrate_j([(0.0, before), (1.0, after)]) == pytest.approx((5000 + 2_000_000) / 1e6)


def test_detect_prefers_ina3221_over_rapl(tmp_path):
    rapl(tmp_path, 1)
    ina3221_hwmon(tmp_path, {"VDD_IN": (5000, 1000)})
    assert isinstance(detect(tmp_path), energy.Ina3221HwmonMeter)


def test_empty_tree_has_no_meter_and_says_why(tmp_path):
    assert detect(tmp_path) is None
    why = describe_unavailable(tmp_path)
    assert why.startswith("No power meter could be read: ") and why.endswith(".") and "\n" not in why
    for part in ("no INA3221 hwmon", "no INA2xx hwmon", "no tegrastats on PATH", "no vcgencmd on PATH",
                 "no intel-rapl package zone"):
        assert part in why


def test_unreadable_rapl_is_skipped_with_the_reason(tmp_path, monkeypatch):
    rapl(tmp_path, 1)
    read_text = pathlib.Path.read_text

    def denied(self, *args, **kwargs):
        if self.name == "energy_uj":  # as on Linux >= 5.10 for anyone but root
            raise PermissionError(13, "Permission denied")
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "read_text", denied)
    assert detect(tmp_path) is None
    why = describe_unavailable(tmp_path)
    assert f"cannot read {tmp_path}/sys/class/powercap/intel-rapl:0/energy_uj (permission denied: " \
           "run as root or `chmod o+r` it)" in why


def test_reading_failures_are_edge_cam_errors(tmp_path):
    rapl(tmp_path, 1)
    meter = energy.RaplMeter(tmp_path)
    (tmp_path / "sys/class/powercap/intel-rapl:0/energy_uj").unlink()
    with pytest.raises(EdgeCamError, match=r"cannot read .*energy_uj \(No such file or directory\)"):
        meter.read()

    ina3221_hwmon(tmp_path, {"VDD_IN": (5000, 1000)})
    (tmp_path / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1/curr1_input").write_text("oops\n")
    with pytest.raises(EdgeCamError, match="hwmon1: curr1_input holds 'oops', not a number"):
        energy.Ina3221HwmonMeter(tmp_path).read()
    assert "curr1_input holds 'oops'" in describe_unavailable(tmp_path)  # detect skipped it


# ---- tools on PATH ------------------------------------------------------------------------------

def test_tegrastats_backend_runs_the_tool(tmp_path, bin_dir):
    args_file = tmp_path / "args"
    tool(bin_dir, "tegrastats", f"open({str(args_file)!r}, 'w').write(' '.join(sys.argv[1:]))\n"
                                f"while True:\n    print({TEGRASTATS_ORIN!r}, flush=True)\n    time.sleep(0.05)")
    meter = detect(tmp_path)
    assert isinstance(meter, energy.TegrastatsMeter)
    with meter:
        assert meter.read().watts == pytest.approx(5.123)
        with measure(meter, interval=0.02) as m:
            time.sleep(0.2)
        assert m.average_w == pytest.approx(5.123)
        proc = meter._proc
    assert args_file.read_text() == "--interval 50"
    assert proc is not None and proc.wait(5) is not None  # close() stopped it


def test_tegrastats_that_fails_says_so(tmp_path, bin_dir):
    tool(bin_dir, "tegrastats", "print('Error: cannot open /sys/kernel/debug/clk', flush=True)\nsys.exit(1)")
    # Which comes first, the line or the exit, is a race; either way the user sees tegrastats' words.
    said = r"tegrastats (stopped|printed no power rails): 'Error: cannot open /sys/kernel/debug/clk'"
    with energy.TegrastatsMeter() as meter, pytest.raises(EdgeCamError, match=said):
        meter.read()
    assert re.search(said, describe_unavailable(tmp_path))


def test_vcgencmd_backend_runs_the_tool(tmp_path, bin_dir):
    tool(bin_dir, "vcgencmd", f"assert sys.argv[1:] == ['pmic_read_adc']\nprint({PMIC_READ_ADC!r})")
    meter = detect(tmp_path)
    assert isinstance(meter, energy.PmicMeter)
    assert meter.read().watts == pytest.approx(VDD_CORE_W + SYS_3V3_W)


def test_vcgencmd_on_a_pi4_is_skipped_with_the_reason(tmp_path, bin_dir):
    tool(bin_dir, "vcgencmd", "print('error=2 error_msg=\"Invalid arguments\"')\nsys.exit(255)")
    assert detect(tmp_path) is None
    assert 'reported no rail with both volts and amps (error=2 error_msg="Invalid arguments"); ' \
           "it needs a Raspberry Pi 5" in describe_unavailable(tmp_path)


# ---- measuring ----------------------------------------------------------------------------------

def test_constant_power_integrates_to_watts_times_time():
    meter = ConstantMeter(4.0)
    with measure(meter, interval=0.02) as m:
        time.sleep(0.3)
        m.frames = 12
    assert 0.29 < m.elapsed_s < 2.0
    assert m.energy_j == pytest.approx(4.0 * m.elapsed_s, rel=0.1)
    assert m.average_w == pytest.approx(4.0)
    assert m.mj_per_frame() == pytest.approx(m.energy_j * 1e3 / 12)
    assert m.mj_per_frame(6) == pytest.approx(m.energy_j * 1e3 / 6)
    assert m.samples == meter.reads >= 5


def test_constant_power_from_a_fake_ina219(tmp_path):
    write_tree(tmp_path, {"sys/class/hwmon/hwmon0/name": "ina219", "sys/class/hwmon/hwmon0/power1_input": 2000000})
    with measure(energy.Ina2xxHwmonMeter(tmp_path), interval=0.05) as m:
        time.sleep(0.3)
    assert m.elapsed_s > 0.29
    assert m.energy_j == pytest.approx(2.0 * m.elapsed_s, rel=0.1)
    assert m.meter_name.startswith("INA2xx hwmon")


def test_energy_counter_is_sampled_often_enough_to_catch_every_wrap():
    # 10 W into a 1.5 J counter wraps about three times in 0.4 s; start and end alone would miss it.
    with measure(WrappingCounter(10.0, max_uj=1_500_000), interval=0.01) as m:
        time.sleep(0.4)
    assert m.elapsed_s > 0.39
    assert m.energy_j == pytest.approx(10.0 * m.elapsed_s, rel=0.1)
    assert m.average_w == pytest.approx(10.0, rel=0.1)


def test_a_failing_reading_is_raised_when_the_block_ends():
    class Flaky(ConstantMeter):
        def read(self) -> Sample:
            if self.reads >= 2:
                raise EdgeCamError("the sensor went away.")
            return super().read()

    with pytest.raises(EdgeCamError, match="the sensor went away"):
        with measure(Flaky(1.0), interval=0.01):
            time.sleep(0.1)


def test_frames_are_required_for_mj_per_frame():
    with measure(ConstantMeter(1.0)) as m:
        time.sleep(0.01)
    with pytest.raises(EdgeCamError, match="frame count"):
        m.mj_per_frame()


# ---- this machine -------------------------------------------------------------------------------

REAL_RAPL = pathlib.Path("/sys/class/powercap/intel-rapl:0/energy_uj")


@pytest.mark.skipif(not os.access(REAL_RAPL, os.R_OK),
                    reason=f"{REAL_RAPL} is not readable here (absent, or root-only since Linux 5.10)")
def test_real_rapl_on_this_machine():
    meter = energy.RaplMeter("/")
    with measure(meter, interval=0.05) as m:
        sum(i * i for i in range(2_000_000))  # some CPU work so the package draws power
        m.frames = 1
    assert m.energy_j > 0
    assert 0 < m.average_w < 1000  # no socket draws a kilowatt
    print(f"{meter.name}: {m.average_w:.1f} W over {m.elapsed_s:.3f} s, {m.samples} samples")
