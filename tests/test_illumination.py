import numpy as np
import pytest
import tifffile

from morphoprof import illumination as il
from morphoprof import images, simulate
from morphoprof.metadata import InputError


def test_running_mean_matches_numpy():
    rng = np.random.default_rng(0)
    images = [rng.random((16, 20)).astype(np.float32) for _ in range(7)]
    assert np.allclose(il.running_mean(iter(images)), np.mean(images, axis=0), atol=1e-6)
    with pytest.raises(ValueError, match="no images"):
        il.running_mean([])


def test_function_is_at_least_one_and_smooth():
    y, x = np.mgrid[0:64, 0:80]
    mean = 100 + 50 * np.exp(-((y - 32) ** 2 + (x - 40) ** 2) / 800) + np.random.default_rng(1).normal(0, 5, (64, 80))
    function = il.illumination_function(mean.astype(np.float32))
    assert function.min() == pytest.approx(1.0) and function.dtype == np.float32
    assert np.abs(np.diff(function, axis=1)).max() < 0.05


def test_corrects_the_real_cellprofiler_illumination_plate(shared_data):
    """The 72 real Transfluor fields: the plate's mean image becomes flatter.

    Measure: coefficient of variation (std/mean) of the pixel-wise mean of the plate's fields,
    before and after dividing each field by the illumination function.
    """
    paths = sorted((shared_data / "cellprofiler_examples" / "ExampleIlluminationCorrection_AS_09047").glob("*.TIF"))
    assert len(paths) == 72
    mean = il.running_mean(tifffile.imread(p).astype(np.float32) for p in paths)
    function = il.illumination_function(mean)
    corrected_mean = il.running_mean(tifffile.imread(p).astype(np.float32) / function for p in paths)
    before, after = il.coefficient_of_variation(mean), il.coefficient_of_variation(corrected_mean)
    assert after < 0.75 * before, (before, after)


def test_recovers_the_simulated_shading():
    params = simulate.ScreenParams(plates=1, batches=1, sites=3, moas=2, illumination_strength=0.6)
    fields = list(simulate.simulate_plate(params, "SIM01"))
    for channel in range(3):
        mean = il.running_mean(raw[channel].astype(np.float32) for _, raw, _ in fields)
        function = il.illumination_function(mean)
        truth = simulate.illumination_field(params, 0, channel)
        assert np.corrcoef(function.ravel(), truth.ravel())[0, 1] > 0.85
        assert il.coefficient_of_variation(truth / function) < 0.6 * il.coefficient_of_variation(truth)


RESIDUAL_SHADING_BOUND = 0.07


def test_subtracting_the_dark_level_recovers_more_of_the_simulated_shading():
    """The simulator's camera offset (CAMERA_OFFSET counts, not shaded) flattens a function built
    with it in. Subtracted first, as illumination.dark_level does, the residual shading (the CV of
    the true field over the function) falls by at least 15 % in every channel, and below
    RESIDUAL_SHADING_BOUND. Fields as QC leaves them: no blank or debris fields."""
    params = simulate.ScreenParams(
        plates=1, batches=1, sites=3, moas=2, illumination_strength=0.6, blank_fraction=0, debris_fraction=0
    )
    fields = list(simulate.simulate_plate(params, "SIM01"))
    for channel in range(3):
        truth = simulate.illumination_field(params, 0, channel)
        mean = il.running_mean(raw[channel].astype(np.float32) for _, raw, _ in fields)
        residual = {
            dark: il.coefficient_of_variation(truth / il.illumination_function(mean - dark))
            for dark in (0.0, simulate.CAMERA_OFFSET)
        }
        print(f"\nchannel {channel}: residual shading {residual[0.0]:.3f}, less the dark level {residual[100.0]:.3f}")
        assert residual[simulate.CAMERA_OFFSET] < min(0.85 * residual[0.0], RESIDUAL_SHADING_BOUND)


def test_dark_frames_remove_the_sensor_s_fixed_pattern_that_one_level_leaves_in():
    """A camera whose dark signal rises across the sensor (200 counts left to right over its offset,
    as amplifier glow does): subtracting the mean of 8 dark frames pixel by pixel leaves the
    residual shading of a flat offset (0.032, 0.036, 0.061), where subtracting their one mean level
    leaves the ramp in the function (0.103, 0.070, 0.146)."""
    params = simulate.ScreenParams(
        plates=1, batches=1, sites=3, moas=2, illumination_strength=0.6, blank_fraction=0, debris_fraction=0
    )
    fields = list(simulate.simulate_plate(params, "SIM01"))
    ramp = np.linspace(0, 200, params.width, dtype=np.float32)[None, :]
    rng = np.random.default_rng(0)
    frames = simulate.CAMERA_OFFSET + ramp + rng.normal(scale=15, size=(8, params.height, params.width))
    for channel in range(3):
        truth = simulate.illumination_field(params, 0, channel)
        mean = il.running_mean(raw[channel].astype(np.float32) + ramp for _, raw, _ in fields)
        residual = {
            name: il.coefficient_of_variation(truth / il.illumination_function(mean - dark))
            for name, dark in (("level", float(frames.mean())), ("frames", frames.mean(axis=0)))
        }
        print(
            f"\nchannel {channel}: residual shading, less one level {residual['level']:.3f}, "
            f"less the dark frames {residual['frames']:.3f}"
        )
        assert residual["frames"] < min(0.6 * residual["level"], RESIDUAL_SHADING_BOUND)


def test_dark_frames_are_averaged_and_must_match_the_fields(tmp_path):
    images.write_tiff(tmp_path / "field.tif", np.zeros((6, 8), np.uint16))
    images.write_tiff(
        tmp_path / "dark.tif", np.stack([np.full((6, 8), 100, np.uint16), np.full((6, 8), 104, np.uint16)])
    )
    images.write_tiff(tmp_path / "binned.tif", np.zeros((3, 4), np.uint16))
    assert il.camera_dark(100, "", tmp_path / "field.tif") == 100.0
    dark = il.camera_dark(0, str(tmp_path / "dark.tif"), tmp_path / "field.tif")
    assert dark.shape == (6, 8) and np.all(dark == 102)
    with pytest.raises(
        InputError, match=r"illumination.dark_frames: .*binned.tif holds frames of 3x4 px, the fields are 6x8"
    ):
        il.camera_dark(0, str(tmp_path / "binned.tif"), tmp_path / "field.tif")
    mean = np.full((6, 8), 150.0, np.float32)
    mean[0, :3] = 90.0
    with pytest.raises(
        InputError, match=r"dark_frames: the dark frames' mean reaches plate P1 DNA's mean field at 3 of 48"
    ):
        il.check_dark_level(mean, dark, "plate P1 DNA")
    assert np.array_equal(il.subtract_dark(np.full((2, 6, 8), 100, np.uint16), dark), np.zeros((2, 6, 8)))


def test_a_dark_level_above_the_images_is_named():
    mean = np.full((8, 8), 30.0, np.float32)  # an 8-bit plate, offset-corrected already
    il.check_dark_level(mean, 0.0, "plate P1 DNA")
    with pytest.raises(InputError, match=r"illumination.dark_level: 100 counts, but the darkest pixel of plate P1"):
        il.check_dark_level(mean, 100.0, "plate P1 DNA")


def test_percentile_rescale_maps_bounds_to_unit_range():
    image = np.arange(1000, dtype=np.float32).reshape(20, 50)
    lo, hi = images.percentile_bounds(images.pixel_sample(image, step=1), 0.1, 99.9)
    scaled = images.rescale(image, lo, hi)
    assert scaled.min() == 0 and scaled.max() == 1
    assert np.mean(scaled == 0) == pytest.approx(0.002, abs=0.002)
    assert np.array_equal(images.from_uint16(images.to_uint16(np.array([0.0, 1.0]))), [0.0, 1.0])


def test_plate_bounds_pool_every_fields_pixels_per_channel():
    dark = np.stack([np.zeros((70, 70)), np.full((70, 70), 10.0)])
    bright = np.stack([np.full((70, 70), 100.0), np.full((70, 70), 10.0)])
    (lo, hi), (lo2, hi2) = images.plate_bounds(iter([dark, bright]), 1, 99)
    assert (lo, hi) == (0.0, 100.0)
    assert (lo2, hi2) == (10.0, 11.0)  # a flat channel gets a unit range
    with pytest.raises(ValueError, match="no fields"):
        images.plate_bounds(iter([]), 1, 99)
