"""`data export` tables that other tools read (Hugging Face `datasets`, Ray Data), and the readers
taking those tables, Hugging Face's own exports and the first ganlode format alike."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from ganlode.orchestrator import data
from ganlode.orchestrator.cli.main import main
from ganlode.orchestrator.data.images import png_bytes, to_uint8

SPEC = "mnist5k:3@6+animals:zebra@4"


@pytest.fixture
def exported(tmp_path, capsys) -> str:
    path = str(tmp_path / "t.parquet")
    assert main(["data", "export", SPEC, "--with-eval", "--out", path]) == 0
    capsys.readouterr()
    return path


def test_the_schema_is_the_hugging_face_layout(exported):
    """What `datasets` documents: Image storage struct {bytes, path}, ClassLabel storage int64, and the
    features JSON under the `huggingface` schema metadata key (checked without `datasets` installed)."""
    schema = pq.read_schema(exported)
    assert schema.field("image").type == pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    assert schema.field("label").type == pa.int64()
    assert [schema.field(c).type for c in ("height", "width", "channels")] == [pa.int32()] * 3
    features = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
    assert features["image"] == {"_type": "Image"}
    assert features["label"] == {"names": ["3", "zebra"], "_type": "ClassLabel"}
    assert features["split"] == {"dtype": "string", "_type": "Value"} and set(features) == set(schema.names)
    assert json.loads(schema.metadata[b"ganlode"])[0]["spec"] == SPEC  # the provenance is kept too
    table = pq.read_table(exported)
    first = table.column("image")[0].as_py()
    assert first["path"] == "000000.png" and Image.open(io.BytesIO(first["bytes"])).size == (28, 28)


def test_hugging_face_datasets_loads_it_with_image_and_class_label(exported, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    ds = datasets.load_dataset("parquet", data_files=exported, cache_dir=str(tmp_path / "hf-cache"))["train"]
    assert isinstance(ds.features["image"], datasets.Image)
    assert isinstance(ds.features["label"], datasets.ClassLabel) and ds.features["label"].names == ["3", "zebra"]
    train = data.load_target(SPEC)
    held = data.load_target(SPEC, split="val")  # --with-eval writes the validation rows, then the test rows
    assert len(ds) == len(train) + len(held) + len(data.load_target(SPEC, split="test"))
    names = [ds.features["label"].int2str(i) for i in ds["label"]]
    assert names[:len(train)] == train.labels and ds["split"][:len(train)] == ["train"] * len(train)
    for i in (0, len(train) - 1, len(train)):
        pixels = np.asarray(ds[i]["image"])
        expected = (train if i < len(train) else held).images[i if i < len(train) else 0]
        assert np.array_equal(pixels, to_uint8(expected)[0][..., 0])


def test_ray_data_reads_every_row(exported, ray_cluster):
    import ray.data

    ds = ray.data.read_parquet(exported)
    assert ds.count() == len(data.load_target(SPEC)) + len(data.load_target(SPEC, split="eval"))
    assert {"image", "label", "split"} <= set(ds.schema().names)


def test_the_readers_take_the_new_table_bit_for_bit(exported):
    back = data.load_target(exported)
    t = data.load_target(SPEC)
    assert torch.equal(back.images, t.images) and back.labels == t.labels and back.sources == t.sources
    for split in ("val", "test"):
        assert torch.equal(data.load_target(exported, split=split).images, data.load_target(SPEC, split=split).images)


def _old_format_table(path: str, imageset) -> None:
    """A table exactly as the first `data export` wrote it: PNG bytes in a binary column, string labels."""
    arr = to_uint8(imageset.images)
    cols = {"image": [png_bytes(a) for a in arr], "height": [arr.shape[1]] * len(arr), "width": [arr.shape[2]] * len(arr),
            "channels": [arr.shape[3]] * len(arr), "label": imageset.labels, "source": imageset.sources,
            "split": ["train"] * len(arr)}
    schema = pa.schema([("image", pa.binary()), ("height", pa.int32()), ("width", pa.int32()), ("channels", pa.int32()),
                        ("label", pa.string()), ("source", pa.string()), ("split", pa.string())],
                       metadata={"ganlode": json.dumps([imageset.provenance()])})
    pq.write_table(pa.Table.from_pydict(cols, schema=schema), path)


def test_tables_of_the_first_format_still_read(tmp_path, capsys):
    t = data.load_target(SPEC, seed=3)
    old = str(tmp_path / "old.parquet")
    _old_format_table(old, t)
    back = data.load_target(old)
    assert torch.equal(back.images, t.images) and back.labels == t.labels and back.sources == t.sources
    new = str(tmp_path / "new.parquet")
    assert main(["data", "import", old, "--out", new]) == 0
    assert "10 rows (10 train)" in capsys.readouterr().out
    again = data.load_target(new)
    assert torch.equal(again.images, t.images) and again.labels == t.labels
    assert pq.read_schema(new).field("image").type == pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def test_a_table_hugging_face_wrote_is_a_target_and_imports(tmp_path, capsys):
    """Rows as `datasets` writes them (no source, height or split column; int labels named by the
    ClassLabel; one image stored by path only, beside the table)."""
    t = data.load_target(SPEC, seed=1)
    arr = to_uint8(t.images)
    names = ["3", "zebra"]
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "by-path.png").write_bytes(png_bytes(arr[-1]))
    images = [{"bytes": png_bytes(a), "path": None} for a in arr[:-1]] + [{"bytes": None, "path": "by-path.png"}]
    features = {"img": {"_type": "Image"}, "digit": {"names": names, "_type": "ClassLabel"}}
    schema = pa.schema([("img", pa.struct([("bytes", pa.binary()), ("path", pa.string())])), ("digit", pa.int64())],
                       metadata={"huggingface": json.dumps({"info": {"features": features}})})
    table = pa.Table.from_pydict({"img": images, "digit": [names.index(label) for label in t.labels]}, schema=schema)
    path = str(folder / "train-00000-of-00001.parquet")
    pq.write_table(table, path)

    read = data.load_target(path + ":zebra")  # columns found by their feature type, labels by name
    assert set(read.labels) == {"zebra"}
    everything = data.load_target(path), data.load_target(path, split="eval")
    assert sum(len(s) for s in everything) == len(t)
    out = str(tmp_path / "mine.parquet")
    assert main(["data", "import", path, "--out", out]) == 0
    assert f"of {path} to {out}" in capsys.readouterr().out
    imported = pq.read_table(out)
    assert imported.num_rows == len(t) and set(imported.column("split").to_pylist()) <= {"train", "val", "test"}
    back = data.load_target(out)
    assert torch.equal(back.images, data.load_target(path).images) and back.labels == data.load_target(path).labels


@pytest.mark.skipif(not __import__("importlib").util.find_spec("datasets"), reason="datasets is not installed")
def test_a_dataset_saved_by_datasets_itself_reads(tmp_path):
    import datasets

    t = data.load_target(SPEC, seed=2)
    arr = to_uint8(t.images)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["3", "zebra"])})
    ds = datasets.Dataset.from_dict({"image": [{"bytes": png_bytes(a), "path": None} for a in arr],
                                     "label": [["3", "zebra"].index(label) for label in t.labels]}, features=features)
    path = str(tmp_path / "hf.parquet")
    ds.to_parquet(path)
    whole = data.load_target(path), data.load_target(path, split="eval")
    assert sum(len(s) for s in whole) == len(t)
    assert {label for s in whole for label in s.labels} == {"3", "zebra"}
