"""Reference datasets (actionmd.data, HDF5 from LAMMPS) as training frames, one list per segment."""
from __future__ import annotations

from .batch import Frame


def frames_from_dataset(dataset, stride_fs: float, every: int = 1) -> list[list[Frame]]:
    """(q, p) -> (q', p') pairs ``stride_fs`` apart from every segment, starting every ``every`` frames.

    Segments stay separate (one list each) so that train/validation can be split by trajectory.
    """
    if every < 1:
        raise ValueError(f"'every' must be >= 1, got {every}")
    ratio = stride_fs / dataset.frame_interval_fs
    apart = round(ratio)
    if apart < 1 or abs(ratio - apart) > 1e-6:
        raise ValueError(f"stride {stride_fs:g} fs is not a whole multiple of the stored frame interval "
                         f"{dataset.frame_interval_fs:g} fs; pick a multiple or regenerate with another record_every")
    trajectories = []
    for segment in dataset.segments:
        count = len(segment.positions) - apart
        if count < 1:
            raise ValueError(f"{segment.source}: {len(segment.positions)} frames is too short for a stride of "
                             f"{stride_fs:g} fs ({apart} frames); record longer segments")
        pbc = [True, True, True]
        trajectories.append([
            Frame(segment.atomic_numbers, segment.positions[k], segment.momenta[k], segment.positions[k + apart],
                  segment.momenta[k + apart], segment.cell, pbc, forces=segment.forces[k])
            for k in range(0, count, every)])
    return trajectories
