"""CIFAR reader: standard pickle layout, errors, normalisation, synthetic data and the (local) download path."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch

from grawa_sim.config import ConfigError
from grawa_sim.data import cifar


def _arrays(name: str, n_train: int, n_test: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    k = cifar.CLASSES[name]
    return (rng.integers(0, 256, (n_train, 3, 32, 32), dtype=np.uint8), rng.integers(0, k, n_train),
            rng.integers(0, 256, (n_test, 3, 32, 32), dtype=np.uint8), rng.integers(0, k, n_test))


def _dump(path, data, labels, key=b"labels", **extra):
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"x", key: [int(v) for v in labels], b"data": data, **extra}, f)


def _write_cifar10_by_hand(root, x_train, y_train, x_test, y_test):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    flat = x_train.reshape(len(x_train), 3072)
    for k, idx in enumerate(np.array_split(np.arange(len(x_train)), 5), start=1):
        _dump(folder / f"data_batch_{k}", flat[idx], y_train[idx])
    _dump(folder / "test_batch", x_test.reshape(len(x_test), 3072), y_test)
    return folder


def _same(got, want):
    assert len(got) == 4
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_array_equal(g, w)
    assert got[0].dtype == np.uint8 and got[2].dtype == np.uint8
    assert got[1].dtype == np.int64 and got[3].dtype == np.int64


def test_read_raw_cifar10_hand_written_pickles(tmp_path):
    arrays = _arrays("cifar10", 23, 7)
    _write_cifar10_by_hand(tmp_path, *arrays)
    _same(cifar.read_raw("cifar10", tmp_path), arrays)
    # the channel-major row layout: pixel (c, h, w) of image i is data[i, c*1024 + h*32 + w]
    x = cifar.read_raw("cifar10", tmp_path)[0]
    assert x[0, 1, 2, 3] == arrays[0].reshape(23, 3072)[0, 1 * 1024 + 2 * 32 + 3]


def test_read_raw_cifar100_hand_written_pickles_with_str_keys(tmp_path):
    x_train, y_train, x_test, y_test = _arrays("cifar100", 30, 9)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for file, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        with open(folder / file, "wb") as f:  # str keys and an ndarray of labels are accepted too
            pickle.dump({"data": x.reshape(len(x), 3072), "fine_labels": y, "coarse_labels": y // 5}, f, protocol=2)
    _same(cifar.read_raw("cifar100", tmp_path), (x_train, y_train, x_test, y_test))


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_write_folder_round_trip(tmp_path, name):
    arrays = _arrays(name, 41, 13, seed=1)
    folder = cifar.write_folder(tmp_path, name, *arrays)
    assert folder == tmp_path / cifar.FOLDERS[name] and folder.is_dir()
    _same(cifar.read_raw(name, tmp_path), arrays)
    assert [p.name for p in tmp_path.iterdir()] == [cifar.FOLDERS[name]]  # no temporaries left
    meta = "batches.meta" if name == "cifar10" else "meta"
    with open(folder / meta, "rb") as f:
        names = pickle.load(f, encoding="bytes")[b"label_names" if name == "cifar10" else b"fine_label_names"]
    assert len(names) == cifar.CLASSES[name]


def test_write_folder_other_batch_count_and_overwrite(tmp_path):
    cifar.write_folder(tmp_path, "cifar10", *_arrays("cifar10", 10, 3))
    arrays = _arrays("cifar10", 12, 4, seed=5)
    folder = cifar.write_folder(tmp_path, "cifar10", *arrays, batches=2)
    assert sorted(p.name for p in folder.iterdir()) == ["batches.meta", "data_batch_1", "data_batch_2", "test_batch"]
    _same(cifar.read_raw("cifar10", tmp_path), arrays)
    assert [p.name for p in tmp_path.iterdir()] == ["cifar-10-batches-py"]


def test_read_raw_is_cached_and_rereads_changed_files(tmp_path):
    arrays = _arrays("cifar10", 10, 5)
    folder = cifar.write_folder(tmp_path, "cifar10", *arrays)
    first = cifar.read_raw("cifar10", tmp_path)
    assert cifar.read_raw("cifar10", str(tmp_path))[0] is first[0]
    assert not first[0].flags.writeable
    y = np.full(2, 9)
    _dump(folder / "data_batch_1", np.zeros((2, 3072), np.uint8), y)
    st = (folder / "data_batch_1").stat()
    os.utime(folder / "data_batch_1", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    again = cifar.read_raw("cifar10", tmp_path)
    assert again[0] is not first[0] and again[1][:2].tolist() == [9, 9]


def test_normalised_tensors_are_cached_on_the_same_stamps(tmp_path):
    arrays = _arrays("cifar10", 10, 5)
    folder = cifar.write_folder(tmp_path, "cifar10", *arrays)
    first = cifar.tensors("cifar10", tmp_path)
    assert cifar.tensors("cifar10", str(tmp_path))[0] is first[0]
    torch.testing.assert_close(first[0], cifar.normalise(arrays[0], "cifar10"))
    _dump(folder / "data_batch_1", np.zeros((2, 3072), np.uint8), np.full(2, 9))
    st = (folder / "data_batch_1").stat()
    os.utime(folder / "data_batch_1", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    again = cifar.tensors("cifar10", tmp_path)
    assert again[0] is not first[0] and again[1][:2].tolist() == [9, 9]


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_missing_folder_message(tmp_path, name):
    with pytest.raises(cifar.DataNotFoundError) as info:
        cifar.read_raw(name, tmp_path / "nowhere")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("data_dir: ")
    assert str((tmp_path / "nowhere" / cifar.FOLDERS[name]).resolve()) in msg
    assert "download" in msg and cifar.URLS[name] in msg
    assert isinstance(info.value, ConfigError) and isinstance(info.value, ValueError)


def test_missing_single_file_is_named(tmp_path):
    folder = cifar.write_folder(tmp_path, "cifar10", *_arrays("cifar10", 10, 2))
    (folder / "data_batch_3").unlink()
    with pytest.raises(cifar.DataNotFoundError) as info:
        cifar.read_raw("cifar10", tmp_path)
    msg = str(info.value)
    assert "\n" not in msg and "data_batch_3" in msg and str(folder.resolve()) in msg and "download" in msg


@pytest.mark.parametrize("bad", ["shape", "labels_len", "labels_range", "not_a_dict", "garbage", "code"])
def test_corrupt_batch_is_a_one_line_config_error(tmp_path, bad):
    folder = _write_cifar10_by_hand(tmp_path, *_arrays("cifar10", 10, 2))
    target = folder / "data_batch_2"
    if bad == "shape":
        _dump(target, np.zeros((2, 3000), np.uint8), [0, 1])
    elif bad == "labels_len":
        _dump(target, np.zeros((2, 3072), np.uint8), [0])
    elif bad == "labels_range":
        _dump(target, np.zeros((2, 3072), np.uint8), [0, 10])
    elif bad == "not_a_dict":
        target.write_bytes(pickle.dumps([1, 2, 3]))
    elif bad == "garbage":
        target.write_bytes(b"\x80\x02this is not a pickle\n")
    else:  # a pickle that would call a function on load is refused, not executed
        target.write_bytes(pickle.dumps({b"data": os.getcwd, b"labels": []}).replace(b"getcwd", b"getpid"))
    with pytest.raises(ConfigError) as info:
        cifar.read_raw("cifar10", tmp_path)
    msg = str(info.value)
    assert "\n" not in msg and "data_batch_2" in msg and "is not a CIFAR batch" in msg
    assert not isinstance(info.value, cifar.DataNotFoundError)


def test_unpickler_refuses_globals_outside_numpy(tmp_path):
    class Boom:
        def __reduce__(self):
            return (os.getcwd, ())

    folder = cifar.write_folder(tmp_path, "cifar100", *_arrays("cifar100", 4, 2))
    (folder / "test").write_bytes(pickle.dumps({b"data": Boom(), b"fine_labels": []}))
    with pytest.raises(ConfigError, match="not allowed"):
        cifar.read_raw("cifar100", tmp_path)


def test_normalise_constant_images():
    x = np.zeros((2, 3, 32, 32), np.uint8)
    x[:, 0], x[:, 1], x[:, 2] = 255, 0, 128
    out = cifar.normalise(x, "cifar10")
    assert out.dtype == torch.float32 and out.shape == (2, 3, 32, 32)
    want = [(1.0 - 0.4914) / 0.2470, (0.0 - 0.4822) / 0.2435, (128 / 255 - 0.4465) / 0.2616]
    for c in range(3):
        torch.testing.assert_close(out[:, c], torch.full((2, 32, 32), want[c]), rtol=1e-6, atol=1e-6)
    out100 = cifar.normalise(torch.from_numpy(x), "cifar100", dtype=torch.float64)
    assert out100.dtype == torch.float64
    assert out100[0, 1, 0, 0].item() == pytest.approx((0.0 - 0.4865) / 0.2564, rel=1e-12)
    with pytest.raises(ConfigError):
        cifar.normalise(np.zeros((2, 1, 32, 32), np.uint8), "cifar10")
    with pytest.raises(ConfigError):
        cifar.normalise(x, "mnist")


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_synthetic_deterministic_and_learnable(tmp_path, name):
    cifar.synthetic(tmp_path / "a", name, train=300, test=200, seed=3)
    cifar.synthetic(tmp_path / "b", name, train=300, test=200, seed=3)
    cifar.synthetic(tmp_path / "c", name, train=300, test=200, seed=4)
    a, b, c = (cifar.read_raw(name, tmp_path / d) for d in "abc")
    _same(a, b)
    assert not np.array_equal(a[0], c[0])
    k = cifar.CLASSES[name]
    assert set(a[1].tolist()) == set(range(k)) and set(a[3].tolist()) == set(range(k))
    # learnable: nearest class mean (from the train set) classifies the test set far above chance
    xtr, xte = a[0].reshape(300, -1).astype(float), a[2].reshape(200, -1).astype(float)
    means = np.stack([xtr[a[1] == j].mean(0) for j in range(k)])
    pred = ((means**2).sum(1)[None] - 2 * xte @ means.T).argmin(1)
    assert (pred == a[3]).mean() > 0.8


def test_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("GRAWA_DATA", raising=False)
    assert cifar.data_dir() == cifar.Path("data")
    monkeypatch.setenv("GRAWA_DATA", str(tmp_path))
    assert cifar.data_dir() == tmp_path
    assert cifar.data_dir(tmp_path / "x") == tmp_path / "x"
    assert cifar.data_dir("y") == cifar.Path("y")


def _tarball(path, src_folder=None, evil=None):
    with tarfile.open(path, "w:gz") as tar:
        if src_folder is not None:
            tar.add(src_folder, arcname=src_folder.name)
        if evil is not None:
            info = tarfile.TarInfo(evil)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_download_from_file_url(tmp_path, name, capsys):
    arrays = _arrays(name, 20, 6, seed=2)
    src = cifar.write_folder(tmp_path / "src", name, *arrays)
    archive = tmp_path / "data.tar.gz"
    md5 = _tarball(archive, src)
    root = tmp_path / "root"
    folder = cifar.download(name, root, url=archive.as_uri(), md5=md5, progress=True)
    assert folder == root / cifar.FOLDERS[name]
    assert [p.name for p in root.iterdir()] == [cifar.FOLDERS[name]]
    _same(cifar.read_raw(name, root), arrays)
    assert "downloading" in capsys.readouterr().err
    # present and readable: returns at once without touching the (now bogus) URL
    assert cifar.download(name, root, url=(tmp_path / "gone.tar.gz").as_uri()) == folder
    _same(cifar.load(name, root, download_missing=True), arrays)


def test_download_wrong_md5_leaves_nothing(tmp_path):
    src = cifar.write_folder(tmp_path / "src", "cifar10", *_arrays("cifar10", 10, 2))
    archive = tmp_path / "data.tar.gz"
    _tarball(archive, src)
    root = tmp_path / "root"
    root.mkdir()
    (root / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="MD5"):
        cifar.download("cifar10", root, url=archive.as_uri(), md5="0" * 32, progress=False)
    assert [p.name for p in root.iterdir()] == ["keep.txt"]
    with pytest.raises(ConfigError, match="download of"):  # unreachable URL: same clean-up
        cifar.download("cifar10", root, url=(tmp_path / "gone.tar.gz").as_uri(), progress=False)
    assert [p.name for p in root.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("evil", ["../evil", "cifar-10-batches-py/../../evil", "/tmp/evil-absolute"])
def test_download_rejects_unsafe_members(tmp_path, evil):
    src = cifar.write_folder(tmp_path / "src", "cifar10", *_arrays("cifar10", 10, 2))
    archive = tmp_path / "data.tar.gz"
    md5 = _tarball(archive, src, evil=evil)
    root = tmp_path / "a" / "root"
    with pytest.raises(ConfigError, match="unsafe member"):
        cifar.download("cifar10", root, url=archive.as_uri(), md5=md5, progress=False)
    assert list(root.iterdir()) == []
    assert not (tmp_path / "a" / "evil").exists() and not (tmp_path / "evil").exists()


def test_load_missing_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAWA_DATA", str(tmp_path))
    with pytest.raises(cifar.DataNotFoundError, match="CIFAR-100"):
        cifar.load("cifar100")
    with pytest.raises(ConfigError, match="dataset"):
        cifar.load("cifar1000")
