"""CascadeSpec: the student's training contract in its metadata, written, read back, refused when
wrong (one sentence, exit 2), agreeing with the shipped JSON Schema, and rebuilt from the loose keys
of students distilled before it (torch-free)."""
import copy
import json
from importlib import resources

import pytest

from edge_cam.cli import main
from edge_cam.crop import CropSpec
from edge_cam.errors import EdgeCamError
from edge_cam.gate import MotionGate
from edge_cam.localize import BoxRule
from edge_cam.metadata import rewrite_metadata
from edge_cam.model import Model
from edge_cam.spec import SPEC_KEY, CascadeSpec, check

SHAPES = ["circle", "square", "triangle", "star", "cross", "ring", "arrow", "crescent", "heart"]  # the demo's, but one


def demo_spec(**kw) -> CascadeSpec:
    """A spec that fits the bundled demo student relabelled: nine of the teacher's shapes, then "other"."""
    values = dict(labels=(*SHAPES, "other"), targets={s: (i,) for i, s in enumerate(SHAPES)}, watch=False,
                  other="other", min_score=0.0, input_size=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                  crop=CropSpec(1.5, False, "mean"), fill=(128, 128, 128), every=5, change=None,
                  teacher_resize="stretch", teacher_input_size=None, rule=BoxRule(0.3, "largest"), max_rois=2)
    return CascadeSpec(**{**values, **kw})


def student_with(student_path, tmp_path, props: dict, name: str = "student.onnx") -> str:
    """The demo student relabelled as a distilled one, with `props` in its metadata."""
    path = str(tmp_path / name)
    rewrite_metadata(student_path, path, {"edge_cam.labels": json.dumps([*SHAPES, "other"]), **props})
    return path


def good_json() -> dict:
    return demo_spec(teacher_input_size=(96, 128), change=6.0, watch=True, min_score=0.2,
                     motion=MotionGate(0.01, 4)).to_json()


def test_the_motion_gate_is_optional_and_written_only_when_set():
    assert "motion" not in demo_spec().to_json()["teacher"]  # older runtimes still read a gate-less spec
    d = good_json()
    assert d["teacher"]["motion"] == {"level": 0.01, "every": 4}
    assert CascadeSpec.from_json(d).motion == MotionGate(0.01, 4)
    del d["teacher"]["motion"]  # a spec written before the gate
    assert CascadeSpec.from_json(d).motion is None


def test_the_object_level_is_optional_and_written_only_when_set():
    assert "object_level" not in demo_spec().to_json()["teacher"]["rule"]  # older runtimes still read it
    d = demo_spec(rule=BoxRule(mode="objects", object_level=0.45)).to_json()
    assert CascadeSpec.from_json(d).rule.object_level == 0.45
    d["teacher"]["rule"]["object_level"] = 0
    with pytest.raises(EdgeCamError, match="teacher.rule.object_level 0"):
        CascadeSpec.from_json(d)


def test_round_trip_through_json_and_a_student(student_path, tmp_path):
    spec = demo_spec(teacher_input_size=(96, 128), change=6.0)
    assert CascadeSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    student = Model(student_with(student_path, tmp_path, spec.to_props()))
    assert CascadeSpec.from_metadata(student.info, student.path) == spec
    assert spec.crop_spec() == CropSpec(1.5, False, "mean", 0.3)  # the mask threshold is the rule's
    assert spec.teacher_options() == {"resize": "stretch", "input_size": (96, 128)}
    watch = demo_spec(watch=True).watch_list(Model(student_path).info.labels, 10)
    assert watch is not None and watch.names == SHAPES
    assert demo_spec().watch_list(SHAPES, 10) is None
    with pytest.raises(EdgeCamError, match="class 12, but the teacher has 10 classes"):
        demo_spec(watch=True, targets={**demo_spec().targets, "circle": (12,)}).watch_list(SHAPES, 10)


def test_a_spec_that_is_not_json_is_one_sentence(student_path, tmp_path):
    path = student_with(student_path, tmp_path, {SPEC_KEY: "{version: 1"})
    with pytest.raises(EdgeCamError, match="edge_cam.cascade_spec") as e:
        Model(path)
    assert _one_sentence(str(e.value))


def test_a_plain_student_has_no_spec(student_path):
    assert CascadeSpec.from_metadata(Model(student_path).info) is None  # the demo's: run's flags alone


def _set(path: str, value):
    def change(d):
        *parents, last = path.split(".")
        for p in parents:
            d = d[p]
        if value is KeyError:
            del d[last]
        else:
            d[last] = value
    return change


BAD = [  # (what is changed, a field the sentence must name)
    (_set("version", 2), "version 2"),
    (_set("version", KeyError), "version"),
    (_set("crop.pad", KeyError), "crop.pad"),
    (_set("student.targets", KeyError), "student.targets"),
    (_set("teacher.rule.mode", KeyError), "teacher.rule.mode"),
    (_set("teacher.colour", "red"), "teacher.colour"),
    (_set("extra", 1), "extra"),
    (_set("teacher.rule.bias", 1), "teacher.rule.bias"),
    (_set("student.watch", "yes"), "student.watch"),
    (_set("teacher.every", 0), "teacher.every"),
    (_set("teacher.every", 2.5), "teacher.every"),
    (_set("teacher.change", "fast"), "teacher.change"),
    (_set("crop.mask", "grey"), "crop.mask"),
    (_set("crop.fill", [1, 2, 300]), "crop.fill"),
    (_set("student.min_score", 2), "student.min_score"),
    (_set("student.input_size", [32]), "student.input_size"),
    (_set("teacher.rule.threshold", 0), "teacher.rule.threshold"),
    (_set("teacher.input_size", "big"), "teacher.input_size"),
    (_set("student", []), "student"),
    (_set("teacher.motion", {"level": 0, "every": 5}), "teacher.motion"),
    (_set("teacher.motion", {"level": 0.01, "every": 0}), "teacher.motion"),
    (_set("teacher.motion", {"level": 0.01}), "teacher.motion"),
    (_set("teacher.motion", {"level": 0.01, "every": 5, "noise": 3}), "teacher.motion"),
    (_set("teacher.motion", 0.01), "teacher.motion"),
]


def _one_sentence(text: str) -> bool:
    return "\n" not in text and text.endswith(".") and "Traceback" not in text


@pytest.mark.parametrize("change, field", BAD, ids=[f for _, f in BAD])
def test_each_refusal_is_one_sentence_naming_the_field(change, field):
    d = good_json()
    change(d)
    with pytest.raises(EdgeCamError) as e:
        CascadeSpec.from_json(d, "s.onnx")
    assert field in str(e.value) and _one_sentence(str(e.value)), str(e.value)
    assert str(e.value).startswith("s.onnx ")


def test_labels_must_be_the_targets_then_other():
    d = good_json()
    d["student"]["labels"] = [*SHAPES[:8], "other"]
    with pytest.raises(EdgeCamError, match="student.labels"):
        CascadeSpec.from_json(d)
    with pytest.raises(EdgeCamError, match="not valid: it must be an object"):
        check("not a spec")


def test_a_spec_unlike_its_student_is_refused(student_path, tmp_path):
    path = student_with(student_path, tmp_path, demo_spec(input_size=(64, 64)).to_props())
    with pytest.raises(EdgeCamError, match=r"student.input_size \[64, 64\], but the student's own metadata says \[32, 32\]"):
        CascadeSpec.from_metadata(Model(path).info, path)


@pytest.mark.workstation
def test_the_shipped_schema_agrees_with_the_check():
    jsonschema = pytest.importorskip("jsonschema", reason="the dev extra's jsonschema checks the shipped schema")
    schema = json.loads(resources.files("edge_cam.data").joinpath("cascade_spec.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    goods = [good_json(), demo_spec().to_json(), demo_spec(teacher_input_size=320, change=4.5).to_json(),
             {**good_json(), "teacher": {**good_json()["teacher"], "motion": None}}]
    for d in goods:
        assert not list(validator.iter_errors(d))
        CascadeSpec.from_json(d)
    for change, field in BAD:
        d = good_json()
        change(d)
        assert list(validator.iter_errors(d)), f"the schema takes what the check refuses ({field})"


OLD_KEYS = {  # edge_cam.source["distill"] as distill wrote it before the spec
    "teacher": "teacher.onnx", "macs": 1234, "targets": {s: [i] for i, s in enumerate(SHAPES)}, "other": "other",
    "crop": {"pad": 1.5, "square": False, "mask": "mean"}, "watch": None, "name": None, "min_score": 0.5,
    "teacher_options": {"resize": "stretch", "input_size": [96, 128]}, "teacher_input": [96, 128],
    "rule": {"threshold": 0.3, "mode": "largest", "min_area": 0.01, "fuse_top": 1, "min_distance": 0.1,
             "min_prominence": 0.1, "max_rois": None},
    "max_rois": 2, "every": 5, "change": None, "size": 32, "width": 16, "seed": 0,
}


def old_student(student_path, tmp_path, old: dict) -> str:
    source = {**Model(student_path).info.source, "role": "student", "distill": old}
    return student_with(student_path, tmp_path, {"edge_cam.source": json.dumps(source)}, "old.onnx")


def test_a_student_distilled_before_the_spec(student_path, tmp_path):
    student = Model(old_student(student_path, tmp_path, OLD_KEYS))
    spec = CascadeSpec.from_metadata(student.info, student.path)
    assert spec == demo_spec(min_score=0.5, teacher_input_size=(96, 128))
    watched = CascadeSpec.from_metadata(Model(old_student(student_path, tmp_path, {**OLD_KEYS, "watch": ["circle"]})).info)
    assert watched is not None and watched.watch
    bad = copy.deepcopy(OLD_KEYS)
    bad["crop"]["mask"] = "grey"  # the old keys are checked like a spec
    with pytest.raises(EdgeCamError, match="crop.mask"):
        CascadeSpec.from_metadata(Model(old_student(student_path, tmp_path, bad)).info)


def _events(path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_run_follows_the_spec_and_flags_win(student_path, teacher_path, demo_data, tmp_path):
    student = student_with(student_path, tmp_path, demo_spec(every=4).to_props())
    clip = demo_data("demo_clip.mp4")
    for extra, ran in (([], [0, 4, 8]), (["--every", "3"], [0, 3, 6, 9])):
        events = tmp_path / "events.jsonl"
        assert main(["run", "--teacher", teacher_path, "--student", student, "--source", clip, "--max-frames", "10",
                     "--quiet", "--events", str(events), *extra]) == 0
        got = _events(events)
        assert [e["frame"] for e in got if e["teacher"]["ran"]] == ran
        assert all(len(e["rois"]) <= 2 for e in got)  # the spec's max_rois


@pytest.mark.parametrize("command", ["run", "eval"])
def test_a_student_with_a_bad_spec_exits_2(command, student_path, teacher_path, demo_data, tmp_path, capsys):
    d = demo_spec().to_json()
    d["teacher"]["every"] = "often"
    student = student_with(student_path, tmp_path, {SPEC_KEY: json.dumps(d)})
    clip = demo_data("demo_clip.mp4")
    argv = ["run", "--teacher", teacher_path, "--student", student, "--source", clip, "--max-frames", "2", "--quiet"] \
        if command == "run" else ["eval", "--video", clip, "--teacher", teacher_path, "--student", student]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "teacher.every" in err[-1] and _one_sentence(err[-1]), err


def test_run_and_eval_take_the_students_motion_gate(student_path, teacher_path, demo_data, tmp_path):
    from edge_cam.measure.cascade_eval import evaluate
    student = student_with(student_path, tmp_path, demo_spec(every=30, motion=MotionGate(0.002, 5)).to_props())
    clip = demo_data("demo_clip.mp4")
    events = tmp_path / "events.jsonl"
    assert main(["run", "--teacher", teacher_path, "--student", student, "--source", clip, "--max-frames", "60",
                 "--quiet", "--events", str(events)]) == 0
    got = _events(events)
    assert any(e.get("held") for e in got) and all("motion" in e["teacher"] for e in got[1:])
    assert main(["run", "--teacher", teacher_path, "--student", student, "--source", clip, "--max-frames", "60",
                 "--quiet", "--events", str(events), "--every", "2"]) == 0  # a cadence given keeps the gate
    got = _events(events)
    assert all("motion" in e["teacher"] for e in got[1:]) and max(gaps(got)) <= 2
    assert main(["run", "--teacher", teacher_path, "--student", student, "--source", clip, "--max-frames", "5",
                 "--quiet", "--events", str(events), "--no-motion"]) == 0
    assert not any("motion" in e["teacher"] or e.get("held") for e in _events(events))
    (score,) = evaluate(clip, teacher_path, student, start=0, stop=60).scores
    assert score.motion == {"level": 0.002, "every": 5} and score.held > 0
    out = tmp_path / "eval.json"
    for flags, gate in ((["--every", "30", "60"], {"level": 0.002, "every": 5}),
                        (["--motion-every", "9"], {"level": 0.002, "every": 9}),
                        (["--motion", "0.01"], {"level": 0.01, "every": 5}), (["--no-motion"], None)):
        assert main(["eval", "--video", clip, "--teacher", teacher_path, "--student", student, "--json", str(out),
                     *flags]) == 0
        scores = json.loads(out.read_text())["scores"]
        assert [s.get("motion") for s in scores] == [gate] * len(scores), flags
        assert [s["every"] for s in scores] == ([30, 60] if "--every" in flags else [30])


def gaps(events: list[dict]) -> list[int]:
    """Frames between the teacher's runs in a stream of events."""
    ran = [i for i, e in enumerate(events) if e["teacher"].get("ran")]
    return [b - a for a, b in zip(ran, ran[1:])]


def test_eval_takes_the_students_schedule(student_path, teacher_path, demo_data, tmp_path):
    from edge_cam.measure.cascade_eval import evaluate
    student = student_with(student_path, tmp_path, demo_spec(every=4, change=12.0).to_props())
    clip = demo_data("demo_clip.mp4")
    (score,) = evaluate(clip, teacher_path, student, start=0, stop=12).scores  # no settings: the spec's
    assert (score.every, score.change) == (4, 12.0) and score.teacher_runs >= 3
    assert [(s.every, s.change) for s in evaluate(clip, teacher_path, student, [(6, None)], start=0, stop=12).scores] \
        == [(6, None)]
