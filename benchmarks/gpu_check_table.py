"""The Markdown table of ``gpu_check.sh``: one row per check, read from its logs.

Each row names the check, its headline figure and the spread (min / median /
max) the benchmark printed; a check whose log holds no figure (it failed or
was cut short) is reported as such with its log's last line, never left out.

    python benchmarks/gpu_check_table.py OUT_DIR --device cuda --tiny 0 --seconds 412
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path


def _lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.exists() else []


def _missing(lines: list[str]) -> str:
    last = next((x for x in reversed(lines) if x.strip()), "no output")
    return f"no figure: {last.strip()[:120]}"


def mfu_row(lines: list[str]) -> str:
    rows = [json.loads(x) for x in lines if x.startswith("{") and '"mfu"' in x]
    if not rows:
        return _missing(lines)
    row = rows[0]
    return (
        f"MFU {100 * row['mfu']:.1f} %, {row['tokens_per_s_per_device']:,.0f} tokens/s, "
        f"{row['params'] / 1e9:.2f}B params; step s min {row['step_s_min']:.4g} / median "
        f"{row['step_s_median']:.4g} / max {row['step_s_max']:.4g}"
    )


def forward_rows(lines: list[str]) -> dict[str, str]:
    out = {}
    for name in ("forward", "forward+backward"):
        hit = [x.split() for x in lines if x.split()[:1] == [name] and len(x.split()) == 4]
        spreads = [x.strip() for x in lines if x.strip().startswith(f"{name} ")]
        out[name] = (
            f"{hit[0][3]}x transformers ({hit[0][1]} vs {hit[0][2]} tokens/s); "
            + "; ".join(s for s in spreads if "min" in s)
            if hit
            else _missing(lines)
        )
    return out


def ratio_row(lines: list[str], pattern: str) -> str:
    hits = [x for x in lines if re.search(pattern, x)]
    spreads = [x.split(": ", 1)[-1] for x in lines if x.startswith(("step seconds", "seconds per"))]
    if not hits:
        return _missing(lines)
    return "; ".join([hits[0].strip(), *spreads])


def decode_row(lines: list[str]) -> str:
    sides = [
        x for x in lines if re.match(r"^llamaforge( compiled)?\s+[\d,]+\s+[\d,]+\s+[\d.]+x$", x)
    ]
    if not sides:
        return _missing(lines)
    text = "; ".join(" ".join(s.split()[:-3]) + f" {s.split()[-1]} transformers" for s in sides)
    floors = [x for x in lines if x.startswith("floors per step")]
    return text + (f"; {floors[0]}" if floors else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", type=int, default=0)
    parser.add_argument("--seconds", type=int, default=0)
    args = parser.parse_args()
    log = {p.stem: _lines(p) for p in args.out.glob("*.log")}
    rows = []
    for compiled in ("eager", "compiled"):
        for ac in ("none", "selective"):
            name = f"mfu_{compiled}_ac-{ac}"
            rows.append((f"training MFU, bf16, {compiled}, AC {ac}", mfu_row(log.get(name, []))))
    for name, text in forward_rows(log.get("forward", [])).items():
        rows.append((f"{name} vs transformers (bf16 autocast)", text))
    rows.append(
        ("training step vs transformers (bf16)", ratio_row(log.get("train", []), r"^ratio ours"))
    )
    rows.append(("decoding vs transformers, large", decode_row(log.get("decode_big", []))))
    rows.append(("decoding vs transformers, small", decode_row(log.get("decode_small", []))))
    loads = [x for lines in log.values() for x in lines if x.startswith("load average at")]
    kind = "tiny shapes (smoke run, figures meaningless)" if args.tiny else "full shapes"
    print(f"# GPU check: device {args.device}, {kind}, {args.seconds} s in all\n")
    print("| check | result |")
    print("|---|---|")
    for check, text in rows:
        print(f"| {check} | {text.replace('|', '/')} |")
    if loads:
        print(f"\nfirst/last {loads[0]} / {loads[-1]}")


if __name__ == "__main__":
    main()
