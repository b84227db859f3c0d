"""Two-node (2R2C) thermal model of the heated room.

Nodes: the air (with the furniture, capacity ``c_air_j_k``) and the envelope mass (``c_mass_j_k``).
Conductances: air-mass ``h_am_w_k``, air-outdoor ``h_ao_w_k`` (ventilation plus windows, no mass),
mass-outdoor ``h_mo_w_k`` (opaque walls). The heater, the solar gain and internal gains all go to
the air node (a convective radiator; ISO 13790 puts a radiator's heat on the air node too).

    c_air dT_air/dt  = h_am (T_mass - T_air) + h_ao (T_out - T_air) + Q_air
    c_mass dT_mass/dt = h_am (T_air - T_mass) + h_mo (T_out - T_mass)

The inputs are held constant over a step and the linear system is discretised exactly:
x(t+dt) = x_ss + exp(A dt) (x(t) - x_ss), with x_ss the steady state for those inputs, so any
step length is stable. exp(A dt) comes from the eigen-decomposition of A (real eigenvalues: A is
similar to a symmetric matrix).

Default numbers: the 28 m² well-insulated room worked in /work/shared/notes/thermal-and-control.md
(from ISO 13790:2008 Annex C): c_air 0.4 MJ/K, c_mass = 28 m² x 110 000 J/(m²K) ("light" class),
air-mass 0.0039 K/W, air-outdoor 17 W/K, mass-outdoor 3 W/K.

With these numbers the fast pole is about 24 min (c_air / (h_am + h_ao)) and the slow one about
45 h; the quasi-steady lift of the fast pole under 500 W is about 1.8 K.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FLOOR_AREA_M2 = 28.0
LIGHT_MASS_J_M2K = 110_000.0  # ISO 13790 Annex C, "light" class, per m² of floor


@dataclass(frozen=True)
class RoomParams:
    """Room constants (J/K, W/K, m²); defaults from thermal-and-control.md (28 m² room).

    Solar gain into the air node: ``window_m2 * g_value * aperture_factor * GHI``. The window is the
    4 m² of the worked room, g ≈ 0.5 (double glazing); ``aperture_factor`` 0.35 stands for the frame
    (about 0.7 of the opening is glass) times the share of global horizontal irradiance a vertical,
    partly shaded window of average orientation receives (about 0.5). It is a modelling choice, not a
    measured figure: 500 W/m² of GHI gives 350 W into the room.
    """

    c_air_j_k: float = 0.4e6
    c_mass_j_k: float = FLOOR_AREA_M2 * LIGHT_MASS_J_M2K
    h_am_w_k: float = 1.0 / 0.0039
    h_ao_w_k: float = 17.0
    h_mo_w_k: float = 3.0
    window_m2: float = 4.0
    g_value: float = 0.5
    aperture_factor: float = 0.35

    def __post_init__(self) -> None:
        for name in ("c_air_j_k", "c_mass_j_k", "h_am_w_k", "h_ao_w_k", "h_mo_w_k"):
            if not getattr(self, name) > 0:
                raise ValueError(f"RoomParams.{name} must be > 0")

    def solar_gain_w(self, ghi_w_m2: float) -> float:
        """Solar heat into the air node, W, for a global horizontal irradiance in W/m²."""
        return self.window_m2 * self.g_value * self.aperture_factor * max(0.0, ghi_w_m2)

    @property
    def total_loss_w_k(self) -> float:
        """Steady-state loss coefficient seen from the air node, W/K."""
        series = self.h_am_w_k * self.h_mo_w_k / (self.h_am_w_k + self.h_mo_w_k)
        return self.h_ao_w_k + series

    def mass_equilibrium_c(self, air_c: float, outdoor_c: float) -> float:
        """Mass temperature, °C, at which the mass node is in balance with ``air_c`` and ``outdoor_c``."""
        h_am, h_mo = self.h_am_w_k, self.h_mo_w_k
        return (h_am * air_c + h_mo * outdoor_c) / (h_am + h_mo)


def steady_state(params: RoomParams, heater_w: float, outdoor_c: float,
                 solar_w: float = 0.0, internal_w: float = 0.0) -> tuple[float, float]:
    """Analytic steady state (air_c, mass_c) in °C for constant inputs (W, °C)."""
    air_c = outdoor_c + (heater_w + solar_w + internal_w) / params.total_loss_w_k
    return air_c, params.mass_equilibrium_c(air_c, outdoor_c)


class Room:
    """State of the 2R2C room; ``step`` advances it with inputs held over the step."""

    def __init__(self, params: RoomParams, air_c: float, mass_c: float) -> None:
        self.params = params
        self.air_c = float(air_c)
        self.mass_c = float(mass_c)
        p = params
        self._a = np.array([
            [-(p.h_am_w_k + p.h_ao_w_k) / p.c_air_j_k, p.h_am_w_k / p.c_air_j_k],
            [p.h_am_w_k / p.c_mass_j_k, -(p.h_am_w_k + p.h_mo_w_k) / p.c_mass_j_k],
        ])
        self._eigvals, self._eigvecs = np.linalg.eig(self._a)
        self._eigvecs_inv = np.linalg.inv(self._eigvecs)
        self._expm_cache: dict[float, np.ndarray] = {}

    @classmethod
    def at_equilibrium(cls, params: RoomParams, air_c: float, outdoor_c: float) -> Room:
        """A room whose air is at ``air_c`` °C and whose mass is in balance with it and the outdoor."""
        return cls(params, air_c, params.mass_equilibrium_c(air_c, outdoor_c))

    @property
    def time_constants_s(self) -> tuple[float, float]:
        """The two time constants of the room, s, fast first."""
        taus = sorted(-1.0 / float(np.real(lam)) for lam in self._eigvals)
        return taus[0], taus[1]

    def _expm(self, dt_s: float) -> np.ndarray:
        cached = self._expm_cache.get(dt_s)
        if cached is None:
            diag = np.diag(np.exp(self._eigvals * dt_s))
            cached = np.real(self._eigvecs @ diag @ self._eigvecs_inv)
            if len(self._expm_cache) < 64:
                self._expm_cache[dt_s] = cached
        return cached

    def step(self, dt_s: float, heater_w: float, outdoor_c: float,
             solar_w: float = 0.0, internal_w: float = 0.0) -> None:
        """Advance ``dt_s`` seconds with heater, solar and internal gains (W, into the air node) and
        ``outdoor_c`` (°C) constant over the step. Exact for any dt_s >= 0."""
        if dt_s < 0:
            raise ValueError("dt_s must be >= 0")
        if dt_s == 0:
            return
        ss = np.array(steady_state(self.params, heater_w, outdoor_c, solar_w, internal_w))
        x = ss + self._expm(float(dt_s)) @ (np.array([self.air_c, self.mass_c]) - ss)
        self.air_c, self.mass_c = float(x[0]), float(x[1])
