"""Write the results pages from the committed JSON files in ``benchmarks/results/``.

    python benchmarks/report.py

``docs/results.md`` (the index), ``docs/results/*.md`` (a page per experiment), ``docs/figures/`` and the README's
results table; :func:`condense.bench.report.write_report` does the work, this script only names the checkout's folders.
"""

from __future__ import annotations

from pathlib import Path

from condense.bench.report import write_report

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    for path in write_report(ROOT / "benchmarks" / "results", ROOT / "docs", ROOT / "README.md"):
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
