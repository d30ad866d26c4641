import io
import tarfile

import numpy as np
import pytest
import torch

from conftest import make_image_folder
from mcuformer.data import (AugmentConfig, build_eval_transform, build_train_transform, complement, load_subsplit,
                            make_subsplit, mix_batch, open_split)
from mcuformer.errors import ConfigError, DataError
from mcuformer.train.sampler import EpochSampler


def test_image_folder_scans_sorted_classes_and_loads(image_folder):
    ds = open_split(image_folder, "train")
    assert ds.classes == ["cat", "dog"] and len(ds) == 12 and ds.targets[:6] == [0] * 6
    ds.transform = build_eval_transform(AugmentConfig(), 16, None)
    x, y = ds[7]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and y == 1
    assert len(open_split(image_folder, "test")) == 12  # 'test' falls back to val/


def test_missing_split_and_empty_class_folder(tmp_path, image_folder):
    with pytest.raises(DataError, match="no train split"):
        open_split(tmp_path, "train")
    (image_folder / "train" / "zebra").mkdir()
    with pytest.raises(DataError, match="zebra.*holds no images"):
        open_split(image_folder, "train")


def test_val_classes_must_match_train(image_folder):
    (image_folder / "val" / "cat").rename(image_folder / "val" / "lion")
    with pytest.raises(DataError, match="differ"):
        open_split(image_folder, "val", classes=["cat", "dog"])


def test_corrupt_jpeg_is_named(image_folder):
    bad = image_folder / "train" / "dog" / "003.jpg"
    bad.write_bytes(bad.read_bytes()[:40])
    ds = open_split(image_folder, "train")
    with pytest.raises(DataError, match="003.jpg"):
        ds[9]


def _tar_of(folder, dest, corrupt=None):
    with tarfile.open(dest, "w:gz") as tar:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                data = f.read_bytes()
                if corrupt and f.name == corrupt:
                    data = data[:30]
                info = tarfile.TarInfo("pack/" + str(f.relative_to(folder)))
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return dest


def test_archive_decodes_once_to_the_same_pixels_as_the_folder(image_folder, tmp_path):
    arc = _tar_of(image_folder, tmp_path / "data.tar.gz")
    a, f = open_split(arc, "train"), open_split(image_folder, "train")
    assert a.classes == f.classes and a.targets == f.targets and a.source_size == 16
    for i in (0, 11):
        assert torch.equal(a.raw(i), torch.from_numpy(np.array(f.raw(i))).permute(2, 0, 1))
    assert open_split(arc, "val").arrays.shape == (12, 16, 16, 3)


def test_corrupt_image_inside_archive(image_folder, tmp_path):
    arc = _tar_of(image_folder, tmp_path / "bad.tar.gz", corrupt="002.jpg")
    with pytest.raises(DataError, match="002.jpg"):
        open_split(arc, "train")


def test_real_cifar10_archive(cifar_archive):
    train, test = open_split(cifar_archive, "train"), open_split(cifar_archive, "val")
    assert len(train) == 50_000 and len(test) == 10_000 and train.source_size == 32
    assert np.bincount(train.targets).tolist() == [5000] * 10
    assert train.classes[0] == "airplane" and train.classes[-1] == "truck"


def test_subsplit_is_per_class_seeded_and_checked(image_folder, tmp_path):
    s0 = make_subsplit(image_folder, per_class=2, seed=0, output=tmp_path / "s.json")
    train = open_split(image_folder, "train")
    held = load_subsplit(tmp_path / "s.json", train)
    assert held == s0["heldout"] and len(held) == 4
    assert sorted(np.bincount([train.targets[i] for i in held]).tolist()) == [2, 2]
    assert make_subsplit(image_folder, 2, seed=0)["heldout"] == held
    assert make_subsplit(image_folder, 2, seed=1)["heldout"] != held
    rest = complement(held, len(train))
    assert len(rest) == 8 and not set(rest) & set(held)
    with pytest.raises(DataError, match="cannot hold out"):
        make_subsplit(image_folder, per_class=6)
    with pytest.raises(ConfigError, match="positive"):
        make_subsplit(image_folder, per_class=0)
    other = make_image_folder(tmp_path / "other", per_class=9)
    with pytest.raises(DataError, match="another dataset"):
        load_subsplit(tmp_path / "s.json", open_split(other, "train"))
    renamed = make_image_folder(tmp_path / "renamed", classes=("ant", "bee"))  # as many images, other classes
    with pytest.raises(DataError, match=r"another dataset \(classes \['cat', 'dog'\], this one has ant, bee\)"):
        load_subsplit(tmp_path / "s.json", open_split(renamed, "train"))


def test_augmentation_is_a_function_of_seed_epoch_and_index(image_folder):
    ds = open_split(image_folder, "train")
    ds.transform = build_train_transform(AugmentConfig(crop="pad-crop"), 16, 16)
    ds.seed = 5
    a, b = ds[3][0], ds[3][0]
    assert torch.equal(a, b)
    ds.set_epoch(1)
    assert not torch.equal(ds[3][0], a)


def test_mixup_cutmix_targets_are_distributions():
    cfg = AugmentConfig(mixup=0.8, cutmix=1.0, label_smoothing=0.1)
    x = torch.randn(8, 3, 16, 16)
    y = torch.arange(8) % 4
    for s in range(6):
        _, t = mix_batch(x, y, 4, cfg, torch.Generator().manual_seed(s))
        torch.testing.assert_close(t.sum(1), torch.ones(8))
        assert (t >= 0).all()
    _, t = mix_batch(x, y, 4, AugmentConfig(mixup=0, cutmix=0, label_smoothing=0.0), torch.Generator())
    assert torch.equal(t.argmax(1), y)


def test_epoch_sampler_shards_cover_the_epoch_and_resume_mid_way():
    shards = [EpochSampler(10, shuffle=True, seed=1, rank=r, world_size=3) for r in range(3)]
    for s in shards:
        s.set_epoch(2)
    got = [i for s in shards for i in s]
    assert len(got) == 12 and set(got) == set(range(10))  # padded to equal shards
    full = list(shards[0])
    shards[0].set_epoch(2, start=2)
    assert list(shards[0]) == full[2:]
    ev = [EpochSampler(10, shuffle=False, rank=r, world_size=3, pad=False) for r in range(3)]
    assert sorted(i for s in ev for i in s) == list(range(10))  # evaluation: every image exactly once
