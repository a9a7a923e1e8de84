import numpy as np
import pytest
import tifffile

from morphoprof import images
from morphoprof.metadata import InputError


def test_corrupt_and_missing_images_are_named(tmp_path):
    (tmp_path / "bad.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(InputError, match=r"bad\.tif: not a readable TIFF"):
        images.read_image(tmp_path / "bad.tif")
    with pytest.raises(InputError, match=r"gone\.tif: image not found"):
        images.read_image(tmp_path / "gone.tif")


def test_wrong_shape_and_dtype_are_named(tmp_path):
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, 8, 8, 2), np.uint16))
    with pytest.raises(InputError, match=r"stack\.tif: expected a 2-D grey image, got shape \(3, 8, 8, 2\)"):
        images.read_image(tmp_path / "stack.tif")
    tifffile.imwrite(tmp_path / "bool.tif", np.zeros((8, 8), bool))
    with pytest.raises(InputError, match=r"bool\.tif: unsupported pixel type bool"):
        images.read_image(tmp_path / "bool.tif")


def test_channels_of_a_field_must_agree_in_shape(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((8, 8), np.uint16))
    tifffile.imwrite(tmp_path / "b.tif", np.zeros((8, 9), np.uint16))
    row = {"Metadata_Field": "P1_A01_s1", "Path_a": tmp_path / "a.tif", "Path_b": tmp_path / "b.tif"}
    with pytest.raises(InputError, match=r"field P1_A01_s1: channel images differ in shape"):
        images.read_field(row, ["a", "b"])


def test_real_three_channel_field_reads_as_a_stack(shared_data):
    folder = shared_data / "cellprofiler_examples" / "ExampleHuman"
    row = {f"Path_d{i}": folder / f"AS_09125_050116030001_D03f00d{i}.tif" for i in range(3)}
    stack = images.read_field({"Metadata_Field": "D03", **row}, ["d0", "d1", "d2"])
    assert stack.shape == (3, 512, 512) and stack.dtype == np.float32 and stack[0].max() > 0


def test_tiff_writes_leave_no_partial_file(tmp_path):
    images.write_tiff(tmp_path / "sub" / "x.tif", np.arange(12, dtype=np.uint16).reshape(3, 4))
    assert np.array_equal(tifffile.imread(tmp_path / "sub" / "x.tif"), np.arange(12).reshape(3, 4))
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["x.tif"]
    with pytest.raises(KeyError):  # tifffile opens the file, then finds no TIFF type for object pixels
        images.write_tiff(tmp_path / "sub" / "y.tif", np.array([[None]], dtype=object))
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["x.tif"]


def test_plate_check_reads_headers_and_names_the_odd_image(tmp_path):
    rows = []
    for i, shape in enumerate([(8, 8), (8, 8), (8, 9)]):
        tifffile.imwrite(tmp_path / f"{i}.tif", np.zeros(shape, np.uint16))
        rows.append({"Metadata_Field": f"f{i}", "Path_a": str(tmp_path / f"{i}.tif")})
    import pandas as pd

    assert images.check_plate_images(pd.DataFrame(rows[:2]), ["a"]) == (8, 8)
    with pytest.raises(InputError, match=r"2\.tif: 8x9 pixels, but the plate's other images are 8x8"):
        images.check_plate_images(pd.DataFrame(rows), ["a"])
    (tmp_path / "1.tif").write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"1\.tif: not a readable TIFF"):
        images.check_plate_images(pd.DataFrame(rows), ["a"])


def test_a_channel_of_two_pixel_types_is_refused_but_channels_may_differ(tmp_path):
    import pandas as pd

    rows = []
    for i, (a, b) in enumerate([(np.uint16, np.uint8), (np.uint16, np.uint8), (np.float32, np.uint8)]):
        tifffile.imwrite(tmp_path / f"a{i}.tif", np.zeros((8, 8), a))
        tifffile.imwrite(tmp_path / f"b{i}.tif", np.zeros((8, 8), b))
        rows.append(
            {"Metadata_Field": f"f{i}", "Path_a": str(tmp_path / f"a{i}.tif"), "Path_b": str(tmp_path / f"b{i}.tif")}
        )
    assert images.check_plate_images(pd.DataFrame(rows[:2]), ["a", "b"]) == (8, 8)
    with pytest.raises(InputError, match=r"a2\.tif: float32 pixels, but the plate's other a images are uint16"):
        images.check_plate_images(pd.DataFrame(rows), ["a", "b"])


def test_corrected_batches_read_every_field_in_order_into_the_given_buffers(tmp_path):
    stacks = {f"F{i}": images.to_uint16(np.full((2, 6, 5), i / 10)) for i in range(7)}
    for field_id, stack in stacks.items():
        images.write_tiff(images.corrected_path(tmp_path, field_id), stack)
    made = []

    def allocate(shape):
        made.append(np.zeros(shape, np.uint16))
        return made[-1]

    batches = list(images.corrected_batches(tmp_path, list(stacks), batch_size=3, workers=2, allocate=allocate))
    assert [ids for ids, _ in batches] == [["F0", "F1", "F2"], ["F3", "F4", "F5"], ["F6"]]
    assert all(batch is buffer for (_, batch), buffer in zip(batches, made))
    for ids, batch in batches:
        assert all(np.array_equal(batch[k], stacks[f]) for k, f in enumerate(ids))
    assert np.allclose(images.read_corrected(tmp_path, "F3"), 0.3, atol=1e-4)


def test_a_stack_of_another_shape_is_named(tmp_path):
    images.write_tiff(images.corrected_path(tmp_path, "F0"), np.zeros((2, 6, 5), np.uint16))
    images.write_tiff(images.corrected_path(tmp_path, "F1"), np.zeros((2, 6, 6), np.uint16))
    with pytest.raises(InputError, match=r"F1\.tif: not a readable TIFF stack"):
        list(images.corrected_batches(tmp_path, ["F0", "F1"], batch_size=2))


def test_stacks_and_truncated_files_are_refused_from_their_header(tmp_path):
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((5, 8, 8), np.uint16))
    with pytest.raises(InputError, match=r"stack\.tif: a stack of 5 images; expected one 2-D grey image"):
        images.image_header(tmp_path / "stack.tif")
    tifffile.imwrite(tmp_path / "whole.tif", np.arange(4096, dtype=np.uint16).reshape(64, 64), compression="zlib")
    data = (tmp_path / "whole.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    assert images.image_header(tmp_path / "whole.tif") == ((64, 64), np.dtype(np.uint16))
    with pytest.raises(InputError, match=r"cut\.tif: truncated: its image data ends at byte \d+, the file at \d+"):
        images.image_header(tmp_path / "cut.tif")
    with pytest.raises(InputError, match=r"cut\.tif: not a readable TIFF"):
        images.read_image(tmp_path / "cut.tif")


def test_compressed_data_garbled_inside_an_intact_file_is_found_by_decoding(tmp_path):
    path = tmp_path / "garbled.tif"
    tifffile.imwrite(path, np.arange(4096, dtype=np.uint16).reshape(64, 64), compression="zlib")
    with tifffile.TiffFile(path) as tif:
        start = tif.pages[0].dataoffsets[0]
    data = bytearray(path.read_bytes())
    data[start : start + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))
    assert images.image_header(path) == ((64, 64), np.dtype(np.uint16))  # the header alone reads well
    with pytest.raises(InputError, match=r"garbled.tif: not a readable TIFF"):
        images.image_header(path, decode_compressed=True)
