"""Write ``docs/results.md`` and ``docs/figures/`` from the committed JSON files in ``benchmarks/results/``.

    python benchmarks/report.py

The page itself is :func:`condense.bench.report.write_report`; this script only names the checkout's folders.
"""

from __future__ import annotations

from pathlib import Path

from condense.bench.report import write_report

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    doc = ROOT / "docs" / "results.md"
    write_report(ROOT / "benchmarks" / "results", doc, ROOT / "docs" / "figures")
    print(f"wrote {doc}")


if __name__ == "__main__":
    main()
