import numpy as np
import pytest

from edge_cam.errors import EdgeCamError
from edge_cam.preprocess import Resize, as_rgb, in_order, resize, to_8bit, to_rgb8


def test_to_rgb8_handles_every_common_image_kind():
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 0] = 200  # blue in OpenCV's order
    assert to_rgb8(bgr)[0, 0].tolist() == [0, 0, 200]
    assert to_rgb8(bgr, "RGB")[0, 0].tolist() == [200, 0, 0]
    grey = np.full((4, 5), 77, np.uint8)
    assert to_rgb8(grey).shape == (4, 5, 3) and to_rgb8(grey)[1, 1].tolist() == [77, 77, 77]
    assert to_rgb8(grey[..., None]).shape == (4, 5, 3)
    bgra = np.dstack([bgr, np.full((4, 5), 9, np.uint8)])
    assert to_rgb8(bgra)[0, 0].tolist() == [0, 0, 200]
    deep = np.full((4, 5, 3), 65535, np.uint16)
    assert to_rgb8(deep).dtype == np.uint8 and to_rgb8(deep).max() == 255
    assert to_rgb8(np.full((2, 2, 3), 0.5, np.float32))[0, 0].tolist() == [128, 128, 128]


@pytest.mark.parametrize("bad", [np.zeros((4, 5, 2), np.uint8), np.zeros((4, 5, 3), np.int64),
                                 np.zeros((0, 5, 3), np.uint8), np.zeros((2, 2, 2, 3), np.uint8)])
def test_to_rgb8_rejects_with_a_sentence(bad):
    with pytest.raises(EdgeCamError):
        to_rgb8(bad)


@pytest.mark.parametrize("mode", ["stretch", "letterbox", "crop"])
@pytest.mark.parametrize("frame_size", [(480, 640), (640, 480), (1, 1), (3000, 4000), (37, 211)])
def test_resize_maps_points_back_exactly(mode, frame_size):
    frame = np.zeros((*frame_size, 3), np.uint8)
    out, r = resize(frame, (96, 128), mode)
    assert out.shape == (96, 128, 3) and out.dtype == np.uint8
    xs, ys = np.array([0.0, 3.5, frame_size[1]]), np.array([0.0, 7.25, frame_size[0]])
    bx, by = r.to_frame(*r.to_input(xs, ys))
    np.testing.assert_allclose(bx, xs, atol=1e-9)
    np.testing.assert_allclose(by, ys, atol=1e-9)


def test_resize_puts_a_marked_square_where_the_mapping_says():
    frame = np.zeros((300, 400, 3), np.uint8)
    frame[100:150, 200:300] = 255  # x 200..300, y 100..150
    for mode in ("stretch", "letterbox", "crop"):
        out, r = resize(frame, (120, 120), mode)
        ys, xs = np.nonzero(out[..., 0] > 127)
        x1, y1 = r.to_input(200, 100)
        x2, y2 = r.to_input(300, 150)
        assert abs(xs.min() - x1) <= 1 and abs(xs.max() + 1 - x2) <= 1, mode
        assert abs(ys.min() - y1) <= 1 and abs(ys.max() + 1 - y2) <= 1, mode


def test_letterbox_content_and_padding():
    out, r = resize(np.full((100, 200, 3), 255, np.uint8), (100, 100), "letterbox")
    assert r.content == (0, 25, 100, 75)
    assert out[0, 0].tolist() == [124, 116, 104]  # the mean colour: zero after normalisation
    assert out[50, 50].tolist() == [255, 255, 255]
    assert isinstance(r, Resize) and r.scale_x == r.scale_y == 0.5


@pytest.mark.parametrize("mode", ["stretch", "letterbox", "crop"])
def test_resizing_before_the_channel_swap_gives_the_same_pixels(mode):
    """Models swap BGR→RGB after resizing (cheap on the small input): it must not change a pixel."""
    rng = np.random.default_rng(3)
    bgr = rng.integers(0, 256, (181, 263, 3), np.uint8)
    pad = (124, 116, 104)
    reference, r1 = resize(to_rgb8(bgr, "BGR"), (64, 96), mode, pad)
    image, order = to_8bit(bgr, "BGR")
    small, r2 = resize(image, (64, 96), mode, in_order(pad, order))
    assert order == "BGR" and image is bgr  # no copy of the frame
    assert np.array_equal(as_rgb(small, order), reference) and r1 == r2
    bgra = np.dstack([bgr, np.full(bgr.shape[:2], 7, np.uint8)])
    assert np.array_equal(as_rgb(*to_8bit(bgra, "BGR")), to_rgb8(bgr))
