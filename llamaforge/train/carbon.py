"""Energy and carbon footprint of a training run, with the paper's formula (§2.5).

Touvron et al. follow Wu et al. (2022): energy in Wh = device-hours x device
power (W) x PUE, with a PUE of 1.1, and emissions in tCO2eq = MWh x 0.385,
the US national average carbon intensity, so that runs in different data
centres compare as if they had run in the same one. Table 15 uses 400 W for
an A100-80GB (the paper rounds 36.27 MWh to 36 and 449.8 MWh down to 449).

The estimate counts the accelerators only (no host CPUs, networking or
cooling beyond the PUE), exactly as the paper does, so our numbers and the
paper's are comparable.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

from llamaforge.errors import ConfigError

DEFAULT_PUE = 1.1
DEFAULT_INTENSITY = 0.385  # tCO2eq per MWh


@dataclass(frozen=True)
class CarbonEstimate:
    energy_wh: float
    energy_mwh: float
    tco2eq: float


def estimate_carbon(
    device_hours: float,
    power_w: float,
    pue: float = DEFAULT_PUE,
    intensity: float = DEFAULT_INTENSITY,
) -> CarbonEstimate:
    """Energy and emissions of ``device_hours`` at ``power_w`` watts per device."""
    checks = (
        ("device_hours (--gpu-hours)", device_hours, device_hours >= 0, ">= 0"),
        ("power_w (--power-w)", power_w, power_w > 0, "> 0"),
        ("pue (--pue)", pue, pue >= 1, ">= 1 (total facility power / IT power)"),
        ("intensity (--intensity)", intensity, intensity >= 0, ">= 0 tCO2eq/MWh"),
    )
    for name, value, ok, rule in checks:
        if not (math.isfinite(value) and ok):
            raise ConfigError(f"carbon estimate: {name} must be {rule}, got {value!r}")
    energy_wh = device_hours * power_w * pue
    energy_mwh = energy_wh / 1e6
    return CarbonEstimate(energy_wh=energy_wh, energy_mwh=energy_mwh, tco2eq=energy_mwh * intensity)


def format_estimate(estimate: CarbonEstimate) -> str:
    return (
        f"energy: {estimate.energy_mwh:,.2f} MWh ({estimate.energy_wh:,.0f} Wh)\n"
        f"emissions: {estimate.tco2eq:,.2f} tCO2eq ({estimate.tco2eq * 1e6:,.0f} gCO2eq)"
    )


def _run(args: argparse.Namespace) -> int:
    estimate = estimate_carbon(args.gpu_hours, args.power_w, args.pue, args.intensity)
    print(format_estimate(estimate))
    return 0


def configure(parser: argparse.ArgumentParser) -> None:
    """``llamaforge carbon --gpu-hours H --power-w W [--pue P] [--intensity I]``."""
    parser.add_argument(
        "--gpu-hours", type=float, required=True, help="device-hours of the run (GPU-hours)"
    )
    parser.add_argument(
        "--power-w",
        type=float,
        required=True,
        help="power draw per device in watts (the paper uses 400 for an A100-80GB)",
    )
    parser.add_argument(
        "--pue",
        type=float,
        default=DEFAULT_PUE,
        help=f"power usage effectiveness of the data centre (default {DEFAULT_PUE})",
    )
    parser.add_argument(
        "--intensity",
        type=float,
        default=DEFAULT_INTENSITY,
        help=f"carbon intensity in tCO2eq per MWh (default {DEFAULT_INTENSITY}, US average)",
    )
    parser.set_defaults(run=_run)
