import pytest

from llamaforge.cli import main
from llamaforge.errors import ConfigError
from llamaforge.train.carbon import estimate_carbon

# Touvron et al. 2023, Table 15: (GPU-hours, power W, MWh, tCO2eq), PUE 1.1, 0.385 t/MWh.
TABLE15 = {
    "7B": (82_432, 400, 36, 14),
    "13B": (135_168, 400, 59, 23),
    "33B": (530_432, 400, 233, 90),
    "65B": (1_022_362, 400, 449, 173),
}


@pytest.mark.parametrize("size", sorted(TABLE15))
def test_matches_the_papers_table_15(size):
    hours, watts, mwh, tco2 = TABLE15[size]
    est = estimate_carbon(hours, watts)
    assert est.energy_wh == pytest.approx(hours * watts * 1.1)
    assert est.energy_mwh == pytest.approx(est.energy_wh / 1e6)
    assert abs(est.energy_mwh - mwh) < 1  # the paper prints whole MWh
    assert round(est.tco2eq) == tco2


def test_parameters_change_the_estimate_and_are_validated():
    base = estimate_carbon(1000, 300)
    assert estimate_carbon(1000, 300, pue=1.0).energy_wh == pytest.approx(300_000)
    assert estimate_carbon(1000, 300, intensity=0.0).tco2eq == 0
    assert estimate_carbon(2000, 300).tco2eq == pytest.approx(2 * base.tco2eq)
    for kwargs in ({"pue": 0.9}, {"intensity": -1.0}):
        with pytest.raises(ConfigError):
            estimate_carbon(10, 300, **kwargs)
    with pytest.raises(ConfigError, match="device_hours"):
        estimate_carbon(-1, 300)
    with pytest.raises(ConfigError, match="power_w"):
        estimate_carbon(10, 0)


def test_cli_prints_energy_and_emissions(capsys):
    assert main(["carbon", "--gpu-hours", "82432", "--power-w", "400"]) == 0
    out = capsys.readouterr().out
    assert "36.27 MWh" in out and "13.96 tCO2eq" in out
    assert main(["carbon", "--gpu-hours", "1000", "--power-w", "250", "--pue", "1.0"]) == 0
    assert "0.25 MWh (250,000 Wh)" in capsys.readouterr().out
    intensity = ["--intensity", "0.5"]
    assert (
        main(["carbon", "--gpu-hours", "1000", "--power-w", "1000", "--pue", "1", *intensity]) == 0
    )
    assert "0.50 tCO2eq" in capsys.readouterr().out
    assert main(["carbon", "--gpu-hours", "10", "--power-w", "-5"]) == 2
    assert "power_w" in capsys.readouterr().err
