"""Dynamics per species: velocity autocorrelation, mean-square displacement, diffusion, spectrum.

Time correlations are averaged over every time origin with FFTs (O(F log F) instead of O(F^2)), up to
a lag of half the run, where half the origins still contribute.

    VACF  Z(τ) = <v_i(t) · v_i(t + τ)>                              Å²/fs²
    MSD   <|r_i(t + τ) - r_i(t)|^2>, centre-of-mass motion removed   Å²
    D     slope of the MSD over the fit window / 6  (Einstein)       Å²/ps
    D_GK  (1/3) ∫_0^τ_end Z(τ) dτ  (Green-Kubo, τ_end = end of the fit window)
    VDOS  S(ν) = ∫ Z(τ) w(τ) cos(2πντ) dτ over ±τ_max, w a Hann window, normalised to ∫_0 S dν = 1
"""
from __future__ import annotations

import numpy as np
from ase.data import chemical_symbols
from scipy import fft
from scipy.integrate import trapezoid

from .trajectory import EvaluationError, Trajectory


def correlate(x: np.ndarray, max_lag: int) -> np.ndarray:
    """c[τ, m] = sum_t x[t, m] x[t + τ, m] / (F - τ) for τ < max_lag, every series m (columns)."""
    f = x.shape[0]
    n = fft.next_fast_len(2 * f)
    spectrum = fft.rfft(x, n=n, axis=0)
    c = fft.irfft(spectrum.real**2 + spectrum.imag**2, n=n, axis=0)[:max_lag]
    return c / (f - np.arange(max_lag))[:, None]


def msd_per_atom(r: np.ndarray, max_lag: int) -> np.ndarray:
    """MSD[τ, n] of each atom over every origin (FFT algorithm: S1 - 2 S2): r (F, N, 3) -> (max_lag, N)."""
    f, n, _ = r.shape
    squared = (r * r).sum(axis=2)  # (F, N)
    cumulative = np.vstack([np.zeros((1, n)), np.cumsum(squared, axis=0)])  # sum of squared[:k]
    lags = np.arange(max_lag)
    s1 = (cumulative[f - lags] + cumulative[f] - cumulative[lags]) / (f - lags)[:, None]
    s2 = correlate(r.reshape(f, 3 * n), max_lag).reshape(max_lag, n, 3).sum(axis=2)
    return s1 - 2 * s2


def fit_window_indices(lag_fs: np.ndarray, window_fs: tuple[float, float]) -> np.ndarray:
    chosen = np.flatnonzero((lag_fs >= window_fs[0]) & (lag_fs <= window_fs[1]))
    if len(chosen) < 3:
        raise EvaluationError(f"the diffusion fit window {window_fs[0]:g}-{window_fs[1]:g} fs holds {len(chosen)} "
                              "lag(s) of this trajectory; it needs 3: save frames more often or run longer")
    return chosen


def einstein_diffusion(msd_atoms: np.ndarray, lag_fs: np.ndarray,
                       window_fs: tuple[float, float]) -> tuple[float, float]:
    """(D, standard error) in Å²/ps from straight lines through each atom's MSD over the window.

    The mean of the per-atom slopes is the slope of the mean MSD; their scatter gives the error
    (atoms treated as independent).
    """
    chosen = fit_window_indices(lag_fs, window_fs)
    slopes = np.polyfit(lag_fs[chosen], msd_atoms[chosen], 1)[0]  # Å²/fs per atom
    stderr = slopes.std(ddof=1) / np.sqrt(len(slopes)) if len(slopes) > 1 else float("nan")
    return float(slopes.mean() / 6 * 1000), float(stderr / 6 * 1000)


def vdos(vacf: np.ndarray, dt_fs: float) -> tuple[np.ndarray, np.ndarray]:
    """(ν in THz, S(ν) normalised to unit area) from a VACF sampled every ``dt_fs``."""
    lags = len(vacf)
    window = np.hanning(2 * lags - 1)[lags - 1:]  # 1 at τ = 0, 0 at the last lag
    c = vacf * window
    symmetric = np.concatenate([c, c[-1:0:-1]])  # even in τ: its transform is the cosine transform
    spectrum = fft.rfft(symmetric).real * dt_fs
    nu = fft.rfftfreq(len(symmetric), dt_fs) * 1000.0  # 1/fs -> THz
    area = trapezoid(spectrum, nu)
    return nu, spectrum / area if area > 0 else spectrum


def spectrum_l1(nu: np.ndarray, s: np.ndarray, nu_ref: np.ndarray, s_ref: np.ndarray) -> float:
    """∫|S - S_ref| dν over the frequencies both resolve, each renormalised there (0 .. 2)."""
    top = min(nu[-1], nu_ref[-1])
    grid = nu[nu <= top]
    a, b = s[: len(grid)], np.interp(grid, nu_ref, s_ref)
    a, b = a / trapezoid(a, grid), b / trapezoid(b, grid)
    return float(trapezoid(np.abs(a - b), grid))


def dynamics(traj: Trajectory, window_fs: tuple[float, float]) -> dict:
    """VACF, MSD, D (Einstein and Green-Kubo) and VDOS per species (keys: element symbols)."""
    v = traj.require_velocities("the velocity autocorrelation")
    max_lag = traj.n_frames // 2 + 1
    lag_fs = np.arange(max_lag) * traj.interval_fs
    r = traj.unwrapped_positions()
    com = np.einsum("n,fni->fi", traj.masses, r) / traj.masses.sum()
    r = r - com[:, None, :]
    out = {"lag_fs": lag_fs, "fit_window_fs": list(window_fs), "vacf": {}, "msd": {}, "diffusion": {}, "vdos": {}}
    end = fit_window_indices(lag_fs, window_fs)[-1]
    for z in traj.species:
        name = chemical_symbols[z]
        mine = traj.numbers == z
        count = int(mine.sum())
        vacf = correlate(v[:, mine].reshape(traj.n_frames, 3 * count), max_lag).reshape(max_lag, count, 3)
        vacf = vacf.sum(axis=2).mean(axis=1)
        msd_atoms = msd_per_atom(r[:, mine], max_lag)
        d, d_err = einstein_diffusion(msd_atoms, lag_fs, window_fs)
        nu, spectrum = vdos(vacf, traj.interval_fs)
        out["vacf"][name] = vacf
        out["msd"][name] = msd_atoms.mean(axis=1)
        out["diffusion"][name] = {
            "msd_A2_per_ps": d, "msd_stderr_A2_per_ps": d_err,
            "green_kubo_A2_per_ps": float(trapezoid(vacf[: end + 1], lag_fs[: end + 1]) / 3 * 1000),
        }
        out["vdos"][name] = {"nu_THz": nu, "spectrum": spectrum, "peak_THz": float(nu[np.argmax(spectrum)])}
    return out
