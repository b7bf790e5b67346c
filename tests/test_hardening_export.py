"""Hardening II, export, serving and the CLI (issue #20): every bad input to `keras-swin export`,
`to_saved_model`, `to_tflite` and the serving signatures is refused with a message naming the
problem, what was received and what was expected; no export is left half-written."""

import builtins
import errno
import io
import os
import stat
import struct
import subprocess
import sys
import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_swin
import keras_swin.cli
from keras_swin import export

SIZE = 16
MAX_PIXELS = 1000  # of the served fixture: a 40x40 image (1600 pixels) is over it


def _tiny():
    return keras_swin.SwinTransformer(
        patch_size=2, embed_dim=8, depths=(1,), num_heads=(1,), window_size=4, include_top=True,
        classes=3, input_shape=(SIZE, SIZE, 3),
    )


def _pixels(count, size=SIZE, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (count, size, size, 3)).astype("float32")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny 16x16 classifier and its `.keras` file."""
    directory = tmp_path_factory.mktemp("tiny")
    model = _tiny()
    path = str(directory / "tiny.keras")
    model.save(path)
    return model, path


@pytest.fixture(scope="module")
def served(tiny, tmp_path_factory):
    """The tiny classifier's SavedModel (max_pixels=1000), loaded: its two signatures."""
    model, _ = tiny
    directory = export.to_saved_model(model, tmp_path_factory.mktemp("served"), name="tiny",
                                      class_names=["a", "b", "c"], max_pixels=MAX_PIXELS)
    loaded = tf.saved_model.load(directory)
    return model, loaded.signatures["serving_default"], loaded.signatures["serving_bytes"]


def cli(capsys, *argv):
    """`keras-swin ARGV` in this process: (exit code, stdout, stderr)."""
    code = keras_swin.cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _files(directory):
    """Every file and folder under `directory` (relative paths), hidden ones included."""
    found = []
    for root, dirs, files in os.walk(directory):
        found += [os.path.relpath(os.path.join(root, n), directory) for n in dirs + files]
    return sorted(found)


def _png(height, width, seed=0):
    return tf.io.encode_png(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).numpy()


def _jpeg(height, width, seed=0):
    return tf.io.encode_jpeg(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).numpy()


# -- Item 2, 6, 15: calibration data for --quantize int8 ------------------------------------


def test_int8_with_an_inf_pixel_is_refused_before_the_converter_segfaults(tiny, tmp_path):
    # A subprocess: the converter used to die with SIGSEGV (exit 139) on this input.
    _, model_path = tiny
    images = _pixels(4)
    images[2, 3, 4, 1] = np.inf
    np.save(tmp_path / "inf.npy", images)
    result = subprocess.run(
        [sys.executable, "-m", "keras_swin.cli", "export", model_path, "--format", "tflite", "--quantize", "int8",
         "--representative-data", str(tmp_path / "inf.npy"), "--output", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "must be finite pixel values; 1 of 4 images hold NaN or Inf, first image 2 (0 NaN, 1 Inf)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() or not _files(tmp_path / "out")


def test_int8_calibration_data_is_checked_before_conversion(tiny, tmp_path, capsys):
    model, model_path = tiny
    nan = _pixels(3)
    nan[1, 0, 0, 0] = np.nan
    object_array = np.empty((2,), dtype=object)
    object_array[:] = [{"a": 1}, None]
    cases = {
        "nan.npy": (nan, "must be finite pixel values; 1 of 3 images hold NaN or Inf, first image 1 (1 NaN, 0 Inf)"),
        "empty.npy": (np.zeros((0, SIZE, SIZE, 3), "float32"),
                      "must hold at least one non-empty image (N, 16, 16, 3); received shape (0, 16, 16, 3)"),
        "size.npy": (_pixels(2, size=32), "must be images of shape (N, 16, 16, 3); received shape (2, 32, 32, 3)"),
        "rank.npy": (_pixels(1)[0], "must be images of shape (N, 16, 16, 3); received shape (16, 16, 3)"),
        "strings.npy": (np.full((2, SIZE, SIZE, 3), "a"),
                        "must be real-valued pixels (N, 16, 16, 3) (float32 or an integer type); received dtype <U1"),
        "complex.npy": (_pixels(1).astype("complex64"), "received dtype complex64"),
    }
    for file_name, (data, message) in cases.items():
        np.save(tmp_path / file_name, data)
        code, _, err = cli(capsys, "export", model_path, "--format", "tflite", "--quantize", "int8",
                           "--representative-data", tmp_path / file_name, "--output", tmp_path / "out")
        assert code == 2 and message in err, (file_name, err)
        assert str(tmp_path / file_name) in err, err  # names the file the data came from
    # Files that are not one .npy array: OSErrors naming the path; never unpickled.
    np.save(tmp_path / "pickled.npy", object_array, allow_pickle=True)
    np.savez(tmp_path / "archive.npz", images=_pixels(1))
    (tmp_path / "text.npy").write_text("not numpy")
    files = {
        "pickled.npy": "is not a readable .npy array of images (N, H, W, 3): it holds Python objects (a pickle), "
                       "which are never loaded",
        "archive.npz": "is a .npz archive; expected a .npy of one array",
        "text.npy": "is not a readable .npy array of images",
        "missing.npy": "No --representative-data file at",
    }
    for file_name, message in files.items():
        code, _, err = cli(capsys, "export", model_path, "--format", "tflite", "--quantize", "int8",
                           "--representative-data", tmp_path / file_name, "--output", tmp_path / "out")
        assert code == 2 and message in err and str(tmp_path / file_name) in err, (file_name, err)
    code, _, err = cli(capsys, "export", model_path, "--format", "tflite", "--quantize", "int8",
                       "--output", tmp_path / "out")
    assert code == 2 and "--quantize int8 needs --representative-data" in err
    assert not (tmp_path / "out").exists() or not _files(tmp_path / "out")
    # The library refuses the same data with the same messages.
    with pytest.raises(ValueError, match=r"one non-empty image \(N, 16, 16, 3\); received shape \(0, 16, 16, 3\)"):
        export.to_tflite(model, tmp_path / "x.tflite", quantize="int8", representative_data=np.zeros((0, 16, 16, 3)))
    with pytest.raises(ValueError, match=r"image 1 \(1 NaN, 0 Inf\)"):
        export.to_tflite(model, tmp_path / "x.tflite", quantize="int8", representative_data=nan)
    assert not (tmp_path / "x.tflite").exists()
    with pytest.raises(ValueError, match=r"received shape \(0, 16, 16, 3\)"):
        export.compare_tflite(model, tmp_path / "x.tflite", np.zeros((0, 16, 16, 3)))


# -- Item 7: a failed export leaves nothing that looks complete --------------------------------


def _fail_writing(name):
    def fail(path, *args, **kwargs):
        if str(path).endswith(name):
            raise OSError(errno.ENOSPC, "No space left on device (injected)", str(path))
        return real(path, *args, **kwargs)

    from tensorflow.python.lib.io import file_io

    real = file_io.atomic_write_string_to_file
    return file_io, fail


def test_a_savedmodel_export_that_fails_mid_write_leaves_no_version_folder(tiny, tmp_path, monkeypatch):
    model, _ = tiny
    images = _pixels(2)
    base = tmp_path / "serving"
    file_io, fail = _fail_writing("saved_model.pb")  # after variables/ is written, as a kill would
    with monkeypatch.context() as patch:
        patch.setattr(file_io, "atomic_write_string_to_file", fail)
        with pytest.raises(OSError) as error:
            export.to_saved_model(model, base, name="tiny")
    assert _files(base) == ["tiny"]  # no "1", no hidden leftovers
    assert f"Writing the SavedModel to '{base / 'tiny' / '1'}' failed: " in str(error.value)
    assert "No space left" in str(error.value)
    # A good version 1, then a failed re-export of other weights: version 1 is untouched.
    directory = export.to_saved_model(model, base, name="tiny")
    assert _files(base / "tiny") == sorted(["1"] + ["1/" + f for f in _files(directory)])
    expected = model.predict(images, verbose=0)
    weights = model.get_weights()
    try:
        model.set_weights([w * 0.5 + 0.1 for w in weights])
        with monkeypatch.context() as patch:
            patch.setattr(file_io, "atomic_write_string_to_file", fail)
            with pytest.raises(OSError, match="No space left"):
                export.to_saved_model(model, base, name="tiny")
    finally:
        model.set_weights(weights)
    assert sorted(os.listdir(base / "tiny")) == ["1"]
    served = tf.saved_model.load(directory).signatures["serving_default"]
    np.testing.assert_allclose(served(images=tf.constant(images))["probabilities"], expected, atol=1e-6)
    # Written folders honour the umask (mkdtemp would make them 0700, unreadable by a server user).
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o777 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_tflite_export_that_fails_mid_write_leaves_no_file(tiny, tmp_path, monkeypatch):
    model, _ = tiny
    path = tmp_path / "tiny.tflite"
    real_open = builtins.open

    class HalfWriter:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device (injected)")

        def __getattr__(self, name):
            return getattr(self.f, name)

    def half_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return HalfWriter(f) if ".tflite" in str(file) and ("w" in mode or "x" in mode) else f

    with monkeypatch.context() as patch:
        patch.setattr(builtins, "open", half_open)
        with pytest.raises(OSError, match="No space left"):
            export.to_tflite(model, path)
    assert _files(tmp_path) == []
    size = export.to_tflite(model, path)
    good = path.read_bytes()
    assert len(good) == size and _files(tmp_path) == ["tiny.tflite"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~_umask()
    with monkeypatch.context() as patch:
        patch.setattr(builtins, "open", half_open)
        with pytest.raises(OSError, match="No space left"):
            export.to_tflite(model, path, quantize="float16")
    assert path.read_bytes() == good and _files(tmp_path) == ["tiny.tflite"]
    with pytest.raises(OSError, match="is a folder"):
        export.to_tflite(model, tmp_path)


# -- Item 15: unreadable model files, outputs, sizes -----------------------------------------


def test_export_refuses_unreadable_model_files_and_outputs(tiny, tmp_path, capsys):
    _, model_path = tiny
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(open(model_path, "rb").read()[:3000])
    text = tmp_path / "text.keras"
    text.write_text("this is not a model")
    folder = tmp_path / "folder.keras"
    folder.mkdir()
    h5 = tmp_path / "model.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n")
    for path, message in ((truncated, "is not a readable .keras file: not a zip archive"),
                          (text, "is not a readable .keras file: not a zip archive"),
                          (folder, "is not a file; expected a .keras file"),
                          (h5, "must be a .keras file"),
                          (tmp_path / "nothere.keras", "No model file at")):
        code, _, err = cli(capsys, "export", path, "--output", tmp_path / "out")
        assert code == 2 and message in err and str(path) in err, (path, err)
    # A broken metrics.json next to the model (read for the class names) is named too.
    beside = tmp_path / "beside"
    beside.mkdir()
    (beside / "tiny.keras").write_bytes(open(model_path, "rb").read())
    (beside / "metrics.json").write_text("{not json")
    code, _, err = cli(capsys, "export", beside / "tiny.keras", "--output", tmp_path / "out")
    assert code == 2 and f"'{beside / 'metrics.json'}' (read for the class names) is not readable JSON" in err, err
    (beside / "metrics.json").write_text('{"class_names": ["only", "two"]}')
    code, _, err = cli(capsys, "export", beside / "tiny.keras", "--output", tmp_path / "out")
    assert code == 2 and "must hold `class_names`, a list of 3 strings" in err and "['only', 'two']" in err, err
    output_file = tmp_path / "output.txt"
    output_file.write_text("")
    code, _, err = cli(capsys, "export", model_path, "--output", output_file)
    assert code == 2 and f"--output '{output_file}' is a file; expected a folder" in err, err
    # Read-only: a folder without write permission, or (root ignores permissions) sysfs.
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        target = read_only / "out" if not os.access(read_only, os.W_OK) else "/sys/keras_swin_read_only/out"
        code, _, err = cli(capsys, "export", model_path, "--format", "savedmodel", "--output", target)
        assert code == 2 and "Cannot create the folder" in err and str(target) in err, err
    finally:
        read_only.chmod(0o755)
    assert not (tmp_path / "out").exists()


def test_export_numbers_name_the_option_and_the_valid_range(tiny, tmp_path, capsys):
    _, model_path = tiny
    cases = [
        (["--image-size", "0"], "--image-size must be in [1, 4096]; received --image-size 0"),
        (["--image-size", "-5"], "--image-size must be in [1, 4096]; received --image-size -5"),
        (["--image-size", "5000"], "--image-size must be in [1, 4096]; received --image-size 5000"),
        (["--image-size", "32"], "--image-size 32: The model takes images of a fixed size 16x16; received image_size=32x32"),
        (["--max-pixels", "0"], "--max-pixels must be an int >= 1; received --max-pixels 0"),
        (["--version", "0"], "--version must be an int >= 1; received --version 0"),
        (["--name", "../up"], "--name must be a non-empty folder name without '/'"),
    ]
    for extra, message in cases:
        code, _, err = cli(capsys, "export", model_path, "--output", tmp_path / "out", *extra)
        assert code == 2 and message in err, (extra, err)
    assert not (tmp_path / "out").exists()


def test_library_arguments_are_checked(tiny, tmp_path):
    model, _ = tiny
    dynamic = keras_swin.SwinTransformer(patch_size=2, embed_dim=8, depths=(1,), num_heads=(1,), window_size=4,
                                         include_top=False, input_shape=(None, None, 3))
    for kwargs, message in (
        (dict(version=0), r"`version` must be an int >= 1; received version=0"),
        (dict(version=1.5), r"`version` must be an int >= 1; received version=1.5"),
        (dict(version=True), r"received version=True"),
        (dict(top_k=0), r"`top_k` must be an int >= 1"),
        (dict(max_pixels=0), r"`max_pixels` must be an int >= 1; received max_pixels=0"),
        (dict(name="a/b"), r"`name` must be a non-empty folder name without '/'.*'a/b'"),
        (dict(name=".."), r"received '\.\.'"),
        (dict(class_names="abc"), r"`class_names` must be a list of class names; received 'abc'"),
        (dict(class_names=["a"]), r"one name per class \(3\); received 1 names"),
        (dict(image_size=64), r"fixed size 16x16; received image_size=64x64"),
    ):
        with pytest.raises(ValueError, match=message):
            export.to_saved_model(model, tmp_path, **kwargs)
    for image_size, message in ((0, r"in \[1, 4096\]; received image_size=0"),
                                ((8, 5000), r"received image_size=5000"),
                                ((8, 8, 8), r"\(height, width\) pair"),
                                ("big", r"\(height, width\) pair")):
        with pytest.raises(ValueError, match=message):
            export.to_tflite(dynamic, tmp_path / "x.tflite", image_size=image_size)
    with pytest.raises(ValueError, match=r"one input of shape \(batch, height, width, channels\); received a Sequential "
                                         r"with inputs \[\(None, 5\)\]"):
        export.to_saved_model(keras.Sequential([keras.Input((5,)), keras.layers.Dense(2)]), tmp_path)
    assert _files(tmp_path) == []


# -- Item 16: serving -------------------------------------------------------------------------


def _craft(kind):
    """A small file whose header claims a 10000x10000 image, its body missing or truncated."""
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    riff = b"RIFF" + struct.pack("<I", 64) + b"WEBP"
    if kind == "PNG":
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 10000, 10000, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(b"\0" * 100)))
    if kind == "JPEG":
        data = bytearray(_jpeg(8, 8))
        sof = data.index(b"\xff\xc0")
        data[sof + 5: sof + 9] = struct.pack(">HH", 10000, 10000)
        return bytes(data)
    if kind == "GIF":
        return b"GIF89a" + struct.pack("<HH", 10000, 10000) + b"\x00" * 8
    if kind == "BMP":  # a negative height: rows stored top-down
        return b"BM" + struct.pack("<IHHI", 0, 0, 0, 54) + struct.pack("<Iii", 40, 10000, -10000) + b"\x00" * 8
    if kind == "WebP VP8X":
        return riff + b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4 + (9999).to_bytes(3, "little") * 2
    if kind == "WebP VP8L":
        return riff + b"VP8L" + struct.pack("<I", 5) + b"\x2f" + struct.pack("<I", 9999 | 9999 << 14)
    return riff + b"VP8 " + struct.pack("<I", 10) + b"\x00\x00\x00\x9d\x01\x2a" + struct.pack("<HH", 10000, 10000)


def test_serving_bytes_names_each_bad_image_by_its_index(served):
    _, _, serve_bytes = served
    good = _png(20, 24)
    jpeg = _jpeg(20, 24)
    cases = [
        (b"", "image_bytes[1] is empty (0 bytes)"),
        (b"not an image", "image_bytes[1] is not a JPEG, PNG, GIF, BMP, WebP or JPEG XL file"),
        (jpeg[: len(jpeg) // 2], "image_bytes[1] is a corrupt or truncated JPEG file"),
        (good[:-30], "image_bytes[1] is a corrupt or truncated PNG file"),
        (_jpeg(40, 40), "image_bytes[1] is a 40x40 image (1600 pixels), over the 1000 pixels (max_pixels)"),
        (_png(40, 40), "image_bytes[1] is a 40x40 image (1600 pixels), over the 1000 pixels (max_pixels)"),
    ] + [(_craft(kind), "image_bytes[1] is a 10000x10000 image (100000000 pixels), over the 1000 pixels")
         for kind in ("PNG", "JPEG", "GIF", "BMP", "WebP VP8X", "WebP VP8L", "WebP VP8")]
    for bad, message in cases:
        with pytest.raises(tf.errors.InvalidArgumentError) as error:
            serve_bytes(image_bytes=tf.constant([good, bad, jpeg]))
        assert "serving_bytes refused the batch (1 of 3 images bad" in error.value.message, error.value.message
        assert message in error.value.message, (bad[:20], error.value.message)
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        serve_bytes(image_bytes=tf.constant([b""] * 7 + [good]))
    assert "(7 of 8 images bad" in error.value.message
    assert "image_bytes[4] is empty (0 bytes); and 2 more" in error.value.message
    # Good requests still work, a batch of 0 images too.
    out = serve_bytes(image_bytes=tf.constant([good, jpeg]))
    assert out["probabilities"].shape == (2, 3) and out["labels"].shape == (2, 3)
    empty = serve_bytes(image_bytes=tf.constant([], tf.string))
    assert empty["probabilities"].shape == (0, 3) and empty["labels"].shape == (0, 3)


def test_decoding_reads_every_format_and_checks_the_size_after_decoding_too(monkeypatch):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    files = {}
    for fmt, mode, options in (("PNG", "RGB", {}), ("PNG", "L", {}), ("PNG", "RGBA", {}), ("JPEG", "RGB", {}),
                               ("GIF", "RGB", {}), ("BMP", "RGB", {}), ("WEBP", "RGB", {}),
                               ("WEBP", "RGB", {"lossless": True}), ("WEBP", "RGBA", {}),
                               ("WEBP", "RGBA", {"lossless": True})):
        channels = {"RGB": (3,), "RGBA": (4,), "L": ()}[mode]
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (23, 37) + channels, dtype=np.uint8), mode).save(buffer, fmt, **options)
        files[f"{fmt} {mode} {options}"] = buffer.getvalue()
    for name, data in files.items():
        decoded = export.decode_images(tf.constant([data]), (23, 37), max_pixels=23 * 37)[0].numpy()
        expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), "float32")
        assert np.abs(decoded - expected).max() <= (8 if "JPEG" in name else 0), name
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes\[0\] is a 23x37 image \(851 pixels\), "
                                                                 r"over the 850 pixels"):
            export.decode_images(tf.constant([data]), (23, 37), max_pixels=23 * 37 - 1)
    # With no size in the header (as for JPEG XL), the decoded size is checked before any float cast.
    from keras_swin.export import decoding

    monkeypatch.setattr(decoding, "_header_size", lambda *args: (tf.constant(0, tf.int64), tf.constant(0, tf.int64)))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes\[1\] is a 40x40 image \(1600 pixels\)"):
        export.decode_images(tf.constant([_png(8, 8), _png(40, 40)]), (16, 16), max_pixels=1000)


def test_serving_default_names_the_expected_shape_and_non_finite_images(served):
    model, serve, _ = served
    for shape in ((2, 20, 20, 3), (2, 16, 16, 4), (16, 16, 3)):
        received = ",".join(map(str, shape))
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=rf"Shape of tensor images \[{received}\] is not compatible with expected shape "
                                 r"\[\?,16,16,3\]"):
            serve(images=tf.zeros(shape))
    images = _pixels(3)
    images[1, 2, 3, 0] = np.nan
    images[2, 0, 0, 2] = -np.inf
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"serving_default: images must be finite pixel values in \[0, 255\]; the images at "
                             r"batch indices \[1 2\] hold NaN or Inf"):
        serve(images=tf.constant(images))
    assert serve(images=tf.zeros((0, 16, 16, 3)))["probabilities"].shape == (0, 3)
    good = _pixels(2)
    np.testing.assert_allclose(serve(images=tf.constant(good))["probabilities"], model.predict(good, verbose=0),
                               atol=1e-5)


def test_cli_export_with_int8_and_max_pixels_writes_complete_files_only(tiny, tmp_path, capsys):
    model, model_path = tiny
    np.save(tmp_path / "calibration.npy", _pixels(8))
    out = tmp_path / "out"
    code, stdout, err = cli(capsys, "export", model_path, "--output", out, "--quantize", "int8",
                            "--representative-data", tmp_path / "calibration.npy", "--max-pixels", 5000)
    assert code == 0, err
    assert "against Keras on 8 images: max abs diff" in stdout and "nan" not in stdout
    name = model.name
    # --format all: the SavedModel, the int8 TFLite file and ONNX (float32); not OpenVINO, which
    # takes models built for any size only.
    assert "OpenVINO: skipped (a model of fixed input shape (16, 16, 3)" in stdout
    assert [f for f in _files(out) if "/" not in f] == sorted(["serving", f"{name}_int8.tflite", f"{name}.onnx"])
    assert not [f for f in _files(out) if os.path.basename(f).startswith(".")]
    serve_bytes = tf.saved_model.load(str(out / "serving" / name / "1")).signatures["serving_bytes"]
    assert serve_bytes(image_bytes=tf.constant([_png(70, 70)]))["probabilities"].shape == (1, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"80x80 image \(6400 pixels\), over the 5000 pixels"):
        serve_bytes(image_bytes=tf.constant([_png(80, 80)]))
