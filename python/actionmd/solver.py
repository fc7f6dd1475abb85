"""Solve the implicit midpoint action map for one stride.

    q' = q + dS/dpbar(qbar, pbar),   p' = p - dS/dqbar(qbar, pbar),   qbar = q + dq/2,  pbar = p + dp/2

Unknowns x = (dq, dp); G(x) = (dS/dpbar, -dS/dqbar); residual R = x - G(x). The plain iteration
x <- G(x) diverges once w*dt > pi/2 for any mode (docs/lammps.md, "Description"). Two methods converge there:
- "anderson" (default): type-II Anderson mixing; GMRES-like on linear problems, needs only gradients.
  It mixes the map G~ with the kinetic coupling taken in Gauss–Seidel order: dp' = -dS/dqbar, then
  dq' = dS/dpbar + stride (dp' - dp) / 2m, the exact change of dS/dpbar = stride pbar/m + ... with dp.
  G~ has G's fixed points, and its linear iteration contracts as (w dt/2)^2 per evaluation where G's
  contracts as w dt/2: 7 -> 4 evaluations per step on Ta (SNAP, 20 fs), 21 -> 10 on Cu-Ni (32 fs);
- "newton": Newton–Krylov, GMRES on J = I - dG/dx, whose products J v need one Hessian-vector product
  of S (a double backward): fewer outer iterations, dearer ones; the robust choice for rough actions.
"fixed_point" is the plain iteration, kept for comparison.
When Anderson mixing stalls (maxiter reached), Newton–Krylov takes over from the best iterate seen, for
up to maxiter more iterations (``newton_fallback``): stiff bonds near half a period per stride (flexible
water at 4 fs) can make Anderson's secant model stagnate where Newton's exact Jacobian products do not.

All norms are in mass-scaled variables: a momentum residual r_p counts as the displacement it would
cause over one stride, |r_p| * stride / m, so one tolerance in Å covers positions and momenta.
On convergence the step returned is G(x_k): it conserves total momentum to round-off for any
translation-invariant action, whatever path the iteration took.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import torch

METHODS = ("newton", "anderson", "fixed_point")
DEFAULT_TOL = {torch.float64: 1e-8, torch.float32: 1e-5}  # Å
ONFAIL_WARN_LIMIT = 0.1  # Å: onfail="warn" accepts near misses only; a larger residual is an error anyway


class SolverConvergenceError(RuntimeError):
    """The implicit equations of a step were not solved to the requested tolerance."""


@dataclass
class SolverOptions:
    """Options of the implicit solve. ``tol`` in Å (mass-scaled, see module doc); None = dtype default."""

    tol: float | None = None
    maxiter: int = 50
    method: str = "anderson"
    krylov_dim: int = 40
    anderson_memory: int = 8
    onfail: str = "error"
    newton_fallback: bool = True

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"solver method must be one of {METHODS}, got {self.method!r}")
        if self.onfail not in ("error", "warn"):
            raise ValueError(f"onfail must be 'error' or 'warn', got {self.onfail!r}")
        if self.tol is not None and not self.tol > 0:
            raise ValueError(f"solver tolerance must be a positive length in Å, got {self.tol!r}")
        if self.maxiter < 1:
            raise ValueError(f"maxiter must be >= 1, got {self.maxiter}")
        if self.anderson_memory < 1:
            raise ValueError(f"anderson_memory must be >= 1 (past iterates kept by Anderson mixing), "
                             f"got {self.anderson_memory}")


@dataclass
class StepReport:
    """What one solve did: outer iterations, final residual (Å), action evaluations (gradients + HVPs)."""

    iterations: int
    residual: float
    evaluations: int
    converged: bool
    fell_back: bool = False  # Anderson stalled and Newton finished the solve


ActionFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class _Evaluator:
    """Evaluates G and R at an iterate, keeping the graph when Hessian-vector products will be needed."""

    def __init__(self, action: ActionFn, q, p, p_scale):
        self.action, self.q, self.p, self.p_scale = action, q, p, p_scale
        self.count = 0

    def __call__(self, dq, dp, keep_graph: bool):
        self.count += 1
        qbar = (self.q + 0.5 * dq).detach().requires_grad_(True)
        pbar = (self.p + 0.5 * dp).detach().requires_grad_(True)
        with torch.enable_grad():
            action = self.action(qbar, pbar)
            # materialize_grads: an action may not depend on q at all (free particles)
            gq, gp = torch.autograd.grad(action, (qbar, pbar), create_graph=keep_graph, materialize_grads=True)
        residual_q, residual_p = dq - gp, dp + gq
        norm = torch.maximum(residual_q.abs().amax(), (residual_p.abs() * self.p_scale).amax()) \
            if dq.numel() else torch.zeros((), dtype=dq.dtype)
        return _Point(dq, dp, qbar, pbar, gq, gp, residual_q, residual_p, float(norm.detach()))


@dataclass
class _Point:
    dq: torch.Tensor
    dp: torch.Tensor
    qbar: torch.Tensor
    pbar: torch.Tensor
    gq: torch.Tensor
    gp: torch.Tensor
    residual_q: torch.Tensor
    residual_p: torch.Tensor
    norm: float

    def step(self):
        """G(x): the map's displacement at this iterate, detached."""
        return self.gp.detach(), -self.gq.detach()


def solve(action: ActionFn, q: torch.Tensor, p: torch.Tensor, masses: torch.Tensor, stride: float,
          guess: tuple[torch.Tensor, torch.Tensor], options: SolverOptions, step: int = 0):
    """Solve for (dq, dp) of one stride from (q, p); return (dq, dp, StepReport).

    ``action(qbar, pbar)`` returns the scalar action; ``masses`` has shape [N]; ``guess`` is (dq0, dp0).
    Raises SolverConvergenceError (or warns, with onfail='warn') naming ``step`` when it does not converge.
    """
    tol = options.tol if options.tol is not None else DEFAULT_TOL.get(q.dtype, 1e-8)
    p_scale = (stride / masses).reshape(-1, 1).to(q)
    evaluate = _Evaluator(action, q, p, p_scale)
    dq, dp = guess[0].detach().clone(), guess[1].detach().clone()
    newton = options.method == "newton"
    point = evaluate(dq, dp, keep_graph=newton)
    history: list[tuple[torch.Tensor, torch.Tensor]] = []
    iterations, limit, fell_back, best = 0, options.maxiter, False, point
    while True:
        best = point if point.norm < best.norm else best
        if point.norm != point.norm:  # NaN: never handed back, whatever onfail says
            raise SolverConvergenceError(
                f"step {step}: the action or its gradient is NaN after {iterations} iteration(s); the "
                "configuration is outside what the model can describe (overlapping atoms, wrong units?)")
        if point.norm <= tol:
            dq, dp = point.step()
            return dq, dp, StepReport(iterations, point.norm, evaluate.count, True, fell_back)
        if iterations == limit:
            if options.method == "anderson" and options.newton_fallback and not fell_back:
                newton, fell_back, limit = True, True, limit + options.maxiter
                point = evaluate(best.dq, best.dp, keep_graph=True)
                continue
            tried = (f"{options.maxiter} anderson then {iterations - options.maxiter} newton iterations "
                     f"(maxiter={options.maxiter} each)") if fell_back \
                else f"{iterations} {options.method} iterations (maxiter={options.maxiter})"
            return _fail(point, iterations, evaluate.count, tol, step, options, f"no convergence in {tried}",
                         fell_back)
        iterations += 1
        if newton:
            point = _newton_update(point, evaluate, p_scale, tol, options.krylov_dim)
        elif options.method == "anderson":
            point = _anderson_update(point, evaluate, p_scale, history, options.anderson_memory)
        else:
            dq, dp = point.step()
            point = evaluate(dq, dp, keep_graph=False)


def _fail(point, iterations, evaluations, tol, step, options, why, fell_back=False):
    message = (f"step {step}: the implicit action map was not solved ({why}); residual {point.norm:.3e} Å "
               f"> tol {tol:.1e} Å. Try a model with a shorter stride, a larger maxiter, or check that the "
               "configuration is physical (overlapping atoms, wrong masses or units).")
    if options.onfail == "error":
        raise SolverConvergenceError(message)
    if not point.norm <= ONFAIL_WARN_LIMIT:
        raise SolverConvergenceError(f"{message} The residual is beyond {ONFAIL_WARN_LIMIT} Å, where the last iterate "
                                     "is not a step of the model's map at all, so onfail='warn' stops too.")
    warnings.warn(message, RuntimeWarning, stacklevel=3)
    dq, dp = point.step()
    return dq, dp, StepReport(iterations, point.norm, evaluations, False, fell_back)


# --- Newton–Krylov -------------------------------------------------------------------------------------

def _newton_update(point: _Point, evaluate: _Evaluator, p_scale, tol: float, krylov_dim: int) -> _Point:
    """One inexact Newton step with GMRES, then backtracking while the residual grows."""
    shape = point.dq.shape

    def jacobian_times(u: torch.Tensor) -> torch.Tensor:
        # u holds scaled (v_q, v_p * p_scale); return the scaled J v.
        v_q, v_p = u[0].reshape(shape), u[1].reshape(shape) / p_scale
        hq, hp = torch.autograd.grad((point.gq * v_q).sum() + (point.gp * v_p).sum(),
                                     (point.qbar, point.pbar), retain_graph=True, materialize_grads=True)
        evaluate.count += 1
        return torch.stack([(v_q - 0.5 * hp).reshape(-1), ((v_p + 0.5 * hq) * p_scale).reshape(-1)])

    rhs = -torch.stack([point.residual_q.detach().reshape(-1), (point.residual_p.detach() * p_scale).reshape(-1)])
    delta = _gmres(jacobian_times, rhs, atol=0.1 * tol, rtol=1e-6, max_dim=krylov_dim)
    d_q, d_p = delta[0].reshape(shape), delta[1].reshape(shape) / p_scale
    previous = point
    for _ in range(6):
        trial = evaluate(previous.dq + d_q, previous.dp + d_p, keep_graph=True)
        if trial.norm < previous.norm:  # False for NaN: a trial that broke the model is halved too
            return trial
        d_q, d_p = 0.5 * d_q, 0.5 * d_p
    return trial


def _gmres(apply, rhs: torch.Tensor, atol: float, rtol: float, max_dim: int) -> torch.Tensor:
    """Unrestarted GMRES (Arnoldi, modified Gram–Schmidt) from x0 = 0; returns the best x found."""
    beta = torch.linalg.vector_norm(rhs)
    if beta == 0:
        return torch.zeros_like(rhs)
    target = max(float(atol), float(rtol * beta))
    basis = [rhs / beta]
    hessenberg = torch.zeros(max_dim + 1, max_dim, dtype=rhs.dtype, device=rhs.device)
    e1 = torch.zeros(max_dim + 1, dtype=rhs.dtype, device=rhs.device)
    e1[0] = beta
    coefficients = torch.zeros(0, dtype=rhs.dtype, device=rhs.device)
    for k in range(max_dim):
        w = apply(basis[k])
        for i in range(k + 1):
            hessenberg[i, k] = (w * basis[i]).sum()
            w = w - hessenberg[i, k] * basis[i]
        hessenberg[k + 1, k] = torch.linalg.vector_norm(w)
        small, rhs_small = hessenberg[: k + 2, : k + 1], e1[: k + 2]
        coefficients = torch.linalg.lstsq(small.cpu(), rhs_small.cpu().unsqueeze(1)).solution.squeeze(1).to(rhs)
        residual = torch.linalg.vector_norm(rhs_small - small @ coefficients)
        if residual <= target or hessenberg[k + 1, k] <= 1e-14 * beta:
            break
        basis.append(w / hessenberg[k + 1, k])
    return sum(c * v for c, v in zip(coefficients, basis))


# --- Anderson mixing -----------------------------------------------------------------------------------

def _mixing_coefficients(d_f: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """argmin_g |f - d_f g| (d_f: 6N x m, m <= memory). On a GPU d_f is reduced by QR where it lives and
    only the m x m factor crosses to the host, not 6N x m numbers every iteration."""
    if d_f.is_cuda:
        return _by_qr(d_f, f)
    return torch.linalg.lstsq(d_f, f).solution


def _by_qr(d_f: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    q, r = torch.linalg.qr(d_f)
    return torch.linalg.lstsq(r.cpu(), (q.T @ f).cpu()).solution.to(f)


def _anderson_update(point: _Point, evaluate: _Evaluator, p_scale, history: list, memory: int) -> _Point:
    """Type-II Anderson mixing on x <- G~(x) in scaled variables (GMRES-like on linear problems)."""
    x = torch.stack([point.dq.reshape(-1), (point.dp * p_scale).reshape(-1)])
    r_q, r_p = point.residual_q.detach().reshape(-1), (point.residual_p.detach() * p_scale).reshape(-1)
    f = -torch.stack([r_q + 0.5 * r_p, r_p])  # the kinetic block's Gauss-Seidel map (module doc)
    history.append((x, f))
    del history[:-(memory + 1)]
    update = x + f
    if len(history) > 1:
        d_x = torch.stack([(history[i + 1][0] - history[i][0]).reshape(-1) for i in range(len(history) - 1)], 1)
        d_f = torch.stack([(history[i + 1][1] - history[i][1]).reshape(-1) for i in range(len(history) - 1)], 1)
        gamma = _mixing_coefficients(d_f, f.reshape(-1, 1))
        update = update - ((d_x + d_f) @ gamma).reshape(update.shape)
    shape = point.dq.shape
    return evaluate(update[0].reshape(shape), update[1].reshape(shape) / p_scale, keep_graph=False)
