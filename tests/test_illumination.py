from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml
from scipy import ndimage as ndi

from morphoprof import illumination as il
from morphoprof import images, simulate
from morphoprof import metadata as md
from morphoprof.metadata import InputError

CHANNELS = list(simulate.CHANNELS)
CONFIG = yaml.safe_load((Path(__file__).resolve().parents[1] / "config/config.yaml").read_text())
QC_DEFAULTS, INTENSITY = CONFIG["qc"], CONFIG["intensity"]


def _mean(planes) -> np.ndarray:
    """The pixel-wise mean of images, as the illumination function's input (float64 sum, float32)."""
    return np.mean(np.stack([np.asarray(p, np.float32) for p in planes]), axis=0, dtype=np.float64).astype(np.float32)


def _write_plate(folder, params: simulate.ScreenParams) -> pd.DataFrame:
    """A simulated plate's raw fields as TIFFs, and its field table as check_images writes it."""
    rows = []
    for row, raw, _ in simulate.simulate_plate(params, "SIM01"):
        paths = {md.path_column(ch): folder / f"{row['field']}_{ch}.tif" for ch in CHANNELS}
        for path, plane in zip(paths.values(), raw):
            images.write_tiff(path, plane)
        rows.append({md.FIELD: row["field"], md.PLATE: "SIM01", **paths})
    return pd.DataFrame(rows)


SCAN = {"correct": True, "smoothing": 0.25, "robust_percentile": 2.0, "dark_level": 100.0, "dark_frames": ""}


def test_one_pass_gives_the_mean_of_the_qc_passing_fields_and_the_plate_s_bounds(tmp_path):
    """scan_plate sums every field and takes the QC-flagged ones out again: its means, less the
    dark level, are those of the passing fields read alone, to the last bit (16-bit pixels sum
    exactly). correct_plate's bounds from the scan's pixel samples are those of the corrected
    fields sampled whole (images.plate_bounds), and each field is written scaled by them."""
    params = simulate.ScreenParams(
        plates=1, batches=1, sites=3, height=96, width=112, moas=2, blank_fraction=0.15, debris_fraction=0.15, seed=2
    )
    fields = _write_plate(tmp_path / "raw", params)
    scan = il.scan_plate(fields, CHANNELS, **QC_DEFAULTS, **SCAN)
    passed = fields[scan.qc["QC_Pass"].to_numpy()]
    assert 0 < len(passed) < len(fields)
    for channel in CHANNELS:
        direct = _mean(images.read_image(p) for p in passed[md.path_column(channel)]) - SCAN["dark_level"]
        assert np.array_equal(scan.means[channel], direct), channel
        assert np.array_equal(scan.functions[channel], il.illumination_function(direct)), channel
    functions = np.stack([scan.functions[ch] for ch in CHANNELS])
    for stacked in (functions, None):
        bounds = il.correct_plate(
            fields,
            stacked,
            scan.samples,
            tmp_path / "corrected",
            channels=CHANNELS,
            **INTENSITY,
            dark_level=100,
            dark_frames="",
        )
        corrected = [images.read_field(row, CHANNELS) for _, row in fields.iterrows()]
        if stacked is not None:
            corrected = [il.subtract_dark(stack, 100.0) / functions for stack in corrected]
        assert bounds == images.plate_bounds(corrected, *INTENSITY.values())
        written = images.read_stack(images.corrected_path(tmp_path / "corrected", fields[md.FIELD].iloc[-1]))
        expected = [images.to_uint16(images.rescale(plane, *b)) for plane, b in zip(corrected[-1], bounds)]
        assert np.array_equal(written, np.stack(expected))


def test_a_plate_without_passing_fields_is_named(tmp_path):
    params = simulate.ScreenParams(plates=1, batches=1, sites=1, height=64, width=64, moas=1, seed=1)
    fields = _write_plate(tmp_path, params)
    with pytest.raises(InputError, match="plate SIM01: no field passes image QC"):
        il.scan_plate(fields, CHANNELS, **{**QC_DEFAULTS, "saturated_percent": -1}, **SCAN)


def test_the_smoothing_is_scipy_s_gaussian_filter():
    image = np.random.default_rng(3).random((40, 56)) * 100
    for sigma in (3.0, 10.0, 25.0):  # the last one's kernel is wider than the image
        expected = ndi.gaussian_filter(image, sigma, mode="nearest")
        assert np.allclose(il.gaussian_nearest(image, sigma), expected, rtol=1e-10, atol=0), sigma


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
    mean = _mean(tifffile.imread(p).astype(np.float32) for p in paths)
    function = il.illumination_function(mean)
    corrected_mean = _mean(tifffile.imread(p).astype(np.float32) / function for p in paths)
    before, after = il.coefficient_of_variation(mean), il.coefficient_of_variation(corrected_mean)
    assert after < 0.75 * before, (before, after)


def test_recovers_the_simulated_shading():
    params = simulate.ScreenParams(plates=1, batches=1, sites=3, moas=2, illumination_strength=0.6)
    fields = list(simulate.simulate_plate(params, "SIM01"))
    for channel in range(3):
        mean = _mean(raw[channel].astype(np.float32) for _, raw, _ in fields)
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
        mean = _mean(raw[channel].astype(np.float32) for _, raw, _ in fields)
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
        mean = _mean(raw[channel].astype(np.float32) + ramp for _, raw, _ in fields)
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
