"""The peers section of ``docs/results.md``: a peer's released distilled sets beside condense's of the same k."""

from __future__ import annotations

from pathlib import Path

from condense.bench.seed_table_report import best_text_set
from condense.report.tables import points, section_header, signed_points, table_head, table_row, verdict

# What each peer reports for its own sets, by k: (accuracy, accuracy on the entire data), its model and its paper.
REPORTED = {
    "dilm-sst2": {"model": "BERT-base", "paper": "DiLM (Maekawa et al., NAACL 2024 Findings)", "entire": 92.7,
                  "ks": {5: 72.5, 10: 76.3, 20: 80.3}},
}
MARGIN_POINTS, MARGIN_RATIO = 0.03, 0.05  # the bars: condense ≥ peer + 3 points, its ratio ≥ the peer's reported + 5


def difference(ours: dict, theirs: dict) -> dict:
    """Ours − theirs over independent fresh models: means subtract, variances of the means add."""
    std = (ours["std"] ** 2 + theirs["std"] ** 2 * ours["n"] / theirs["n"]) ** 0.5
    return {"mean": ours["mean"] - theirs["mean"], "std": std, "n": ours["n"]}


def report(results: dict, figures: Path) -> list[str]:
    peer, reported = results["peer"], REPORTED.get(results["peer"])
    config = results["config"]
    entire = results.get("entire")
    lines = section_header(results, f"Peers' released sets beside condense's: {peer}")
    lines += [
        f"The released sets in `{Path(results['folder']).name}` ({config['bench']['peers']['n_sets']} sets per k, "
        f"{config['bench']['peers']['n_inits']} fresh model(s) each) and condense's sets of the same k "
        f"(distillation seeds {config['bench']['seeds']}, {config['bench']['seed_table']['n_inits']} fresh models each), "
        f"all trained by the same recipe on `{config['model']['name']}` and tested on the same "
        f"{results['test_examples']} test examples of {results['task']}. Cells: mean ± std over sets (or seeds) × "
        "fresh models."
        + ("" if entire is None else f" % of entire: of the recipe on the entire training split ({points(entire['subsample'])}, "
           f"seeds {entire['seeds']}, from `{entire['from']}`).")
        + ("" if reported is None else f" Reported: {reported['paper']} with {reported['model']}, accuracy and its share "
           f"of the {reported['entire']} that model reaches on the entire data."),
        "",
    ]
    lines += table_head(["k", f"{peer} (released)", "condense (best text set)", "condense − peer", "peer % of entire",
                         "condense % of entire", "reported (peer's model)", "bars met"], "rrrrrrrl")
    for k, cells in results["ks"].items():
        theirs = cells["peer"]["finetune"]
        best = best_text_set(cells["condense"])
        ours = None if best is None else best[1]
        share = (lambda s: "—" if entire is None else f"{100 * s['mean'] / entire['subsample']['mean']:.1f}%")  # noqa: E731
        claimed = None if reported is None else reported["ks"].get(int(k))
        claimed_share = None if claimed is None else claimed / reported["entire"]
        met = "—"
        if ours is not None and entire is not None and claimed_share is not None:
            ahead = ours["mean"] - theirs["mean"] >= MARGIN_POINTS
            ratio = ours["mean"] / entire["subsample"]["mean"] >= claimed_share + MARGIN_RATIO
            met = f"+{100 * MARGIN_POINTS:.0f} points: {'yes' if ahead else 'no'}; ratio ≥ {claimed_share + MARGIN_RATIO:.0%}: {'yes' if ratio else 'no'}"
        gap = None if ours is None else difference(ours, theirs)
        lines.append(table_row([
            k, points(theirs), "—" if ours is None else f"{points(ours)} ({best[0]})",
            "—" if gap is None else f"{signed_points(gap)} ({verdict(gap, 'ahead', 'behind', 'no different')})",
            share(theirs), "—" if ours is None else share(ours),
            "—" if claimed is None else f"{claimed} ({claimed_share:.0%})", met,
        ]))
    return lines + [""]
