import numpy as np
import pytest

from edge_cam.crop import CropSpec, crop, expand
from edge_cam.localize import Box, HeatMap
from edge_cam.preprocess import resize


def test_expand_pads_squares_and_stays_inside():
    assert expand(Box(40, 40, 60, 60), (100, 100), 1.5, True) == (35, 35, 65, 65)
    x1, y1, x2, y2 = expand(Box(0, 0, 20, 10), (100, 100), 1.0, True)
    assert (x1, y1) == (0, 0) and x2 - x1 == y2 - y1 == 20  # shifted inside, not cut
    x1, y1, x2, y2 = expand(Box(90, 80, 100, 100), (100, 200), 2.0, True)
    assert x2 <= 200 and y2 <= 100 and x2 - x1 == y2 - y1 == 40
    assert expand(Box(10, 10, 30, 20), (100, 100), 1.0, False) == (10, 10, 30, 20)
    assert expand(Box(0, 0, 500, 500), (100, 80), 1.3, True) == (0, 20, 80, 100)  # centre kept as near as fits
    x1, y1, x2, y2 = expand(Box(5, 5, 5, 5), (10, 10), 1.0, True)  # a degenerate box still crops
    assert x2 > x1 and y2 > y1


@pytest.mark.parametrize("mask", ["none", "mean", "blur"])
def test_crop_size_and_cold_masking(mask):
    rgb = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    _, r = resize(rgb, (64, 64), "stretch")
    cam = np.zeros((8, 8), np.float32)
    cam[2:6, 2:6] = 1.0
    heat = HeatMap.from_cam(cam, r)
    c = crop(rgb, Box(30, 20, 130, 100), (32, 32), CropSpec(pad=1.6, square=True, mask=mask), heat,
             fill=(1, 2, 3))
    assert c.image.shape == (32, 32, 3) and c.image.dtype == np.uint8
    x1, y1, x2, y2 = c.region
    assert x2 - x1 == y2 - y1 and 0 <= x1 and x2 <= 160 and 0 <= y1 and y2 <= 120
    corner, centre = c.image[0, 0], c.image[16, 16]
    if mask == "mean":
        assert corner.tolist() == [1, 2, 3] and centre.tolist() != [1, 2, 3]
    cold = heat.region(x1, y1, x2, y2, (32, 32)) < 0.2
    assert cold[0, 0] and not cold[16, 16]
    if mask == "none":
        unmasked = crop(rgb, Box(30, 20, 130, 100), (32, 32), CropSpec(pad=1.6), None)
        assert np.array_equal(unmasked.image, c.image)


@pytest.mark.parametrize("mask", ["none", "mean", "blur"])
def test_cropping_a_bgr_frame_gives_the_rgb_crop(mask):
    rng = np.random.default_rng(4)
    bgr = rng.integers(0, 256, (120, 160, 3), np.uint8)
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    _, r = resize(rgb, (12, 16))
    heat = HeatMap.from_cam(rng.random((12, 16)).astype(np.float32), r)
    spec = CropSpec(mask=mask)
    fill = (10, 20, 30)
    a = crop(rgb, Box(30, 20, 90, 80), (32, 32), spec, heat, fill)
    b = crop(bgr, Box(30, 20, 90, 80), (32, 32), spec, heat, fill, order="BGR")
    assert a.region == b.region and np.array_equal(a.image, b.image)


@pytest.mark.parametrize("kw,field", [({"pad": 0.5}, "pad"), ({"pad": float("nan")}, "pad"), ({"mask": "fog"}, "mask"),
                                      ({"threshold": 0.0}, "threshold"), ({"threshold": 1.5}, "threshold")])
def test_a_crop_spec_checks_itself_when_built(kw, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        CropSpec(**kw)


def test_a_student_spec_checks_itself_when_built():
    from edge_cam.adapt import StudentSpec
    from edge_cam.errors import EdgeCamError
    with pytest.raises(EdgeCamError, match="color 'XYZ' is not valid"):
        StudentSpec(color="XYZ")
