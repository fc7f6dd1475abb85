"""The reader the training code uses: pairs at a stride, splits, and validation errors."""
from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from actionmd.data import DatasetError, load_dataset
from actionmd.data.generate import generate

from amd_data_helpers import tiny_config


def test_pairs_at_a_stride(lj_file):
    ds = load_dataset(lj_file)
    assert (ds.dt_fs, ds.record_every, len(ds)) == (1.0, 1, 4)
    blocks = ds.pairs(stride_fs=8.0)
    assert len(blocks) == 4
    b, seg = blocks[1], ds.segments[1]
    assert b.q.shape == (41 - 8, 32, 3) and b.stride_fs == 8.0
    np.testing.assert_array_equal(b.q_next[0], seg.positions[8])
    np.testing.assert_array_equal(b.p[5], seg.momenta[5])
    assert b.masses.shape == (32,) and b.cell.shape == (3, 3)
    disjoint = ds.pairs(stride_steps=8, overlapping=False)[0]
    assert len(disjoint) == 5
    np.testing.assert_array_equal(disjoint.q[1], ds.segments[0].positions[8])


def test_stride_errors(lj_file):
    ds = load_dataset(lj_file)
    with pytest.raises(DatasetError, match="stride of 41 steps .* longer than the shortest segment"):
        ds.pairs(stride_steps=41)
    with pytest.raises(DatasetError, match="not a whole number of reference steps"):
        ds.pairs(stride_fs=2.5)
    with pytest.raises(DatasetError, match="exactly one of"):
        ds.pairs()


def test_stride_must_be_a_multiple_of_record_every(tmp_path):
    out = tmp_path / "every2.h5"
    generate(tiny_config("lj-mixture", "protocol.record_every=2", "protocol.segments=1"), out, progress=False)
    ds = load_dataset(out)
    assert ds.segments[0].n_frames == 21 and ds.frame_interval_fs == 2.0
    assert len(ds.pairs(stride_steps=4)[0]) == 19
    with pytest.raises(DatasetError, match=r"stride of 3 reference steps is not available: .* every 2 step"):
        ds.pairs(stride_steps=3)


def test_split_by_segment(lj_file):
    ds = load_dataset(lj_file)
    train, val = ds.split(0.75, seed=1)
    assert (len(train), len(val)) == (3, 1)
    assert not {s.source for s in train} & {s.source for s in val}
    assert {s.source for s in train} | {s.source for s in val} == {s.source for s in ds}


def test_mismatched_reference_steps(tmp_path, lj_file):
    other = tmp_path / "dt05.h5"
    generate(tiny_config("lj-mixture", "protocol.dt=0.5", "protocol.segments=1"), other, progress=False)
    with pytest.raises(DatasetError, match=r"disagree on the reference time step.*dt 1.0 fs.*dt 0.5 fs.*protocol.dt"):
        load_dataset([lj_file, other])


def test_mismatched_masses(tmp_path, lj_file):
    other = tmp_path / "heavy-ne.h5"
    generate(tiny_config("lj-mixture", "masses={Ne: 22.0}", "protocol.segments=1"), other, progress=False)
    with pytest.raises(DatasetError, match=r"atomic number 10 has mass 20.1797 u in .* but 22.0 u in .*masses"):
        load_dataset([lj_file, other])


def test_species_not_in_model(lj_file):
    assert len(load_dataset(lj_file, species=["Ne", "Xe"])) == 4
    with pytest.raises(DatasetError, match=r"atomic number\(s\) \[54\] .* not among the model's species \[10, 18\]"):
        load_dataset(lj_file, species=[10, 18])


def test_nan_is_reported_with_its_place(tmp_path, lj_file):
    bad = tmp_path / "nan.h5"
    shutil.copy(lj_file, bad)
    with h5py.File(bad, "a") as f:
        f["condition_001/segment_0000/forces"][7, 3, 1] = np.nan
    with pytest.raises(DatasetError, match=r"nan.h5:condition_001/segment_0000: forces has 1 NaN/inf .* frame 7"):
        load_dataset(bad)


def test_empty_and_foreign_files(tmp_path, lj_file):
    empty = tmp_path / "empty.h5"
    shutil.copy(lj_file, empty)
    with h5py.File(empty, "a") as f:
        for c in list(f):
            for s in [k for k in f[c] if k.startswith("segment_")]:
                del f[c][s]
    with pytest.raises(DatasetError, match=r"empty.h5: no finished segments; run \(or re-run, it resumes\)"):
        load_dataset(empty)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = [1.0]
    with pytest.raises(DatasetError, match="not an actionmd reference file"):
        load_dataset(foreign)
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "missing.h5")
