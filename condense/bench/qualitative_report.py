"""The qualitative section of ``docs/results.md``: every distilled example, and token statistics against real text."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from condense.report.tables import points, section_header, table_head, table_row

TOKEN_STATISTICS = {  # key of token_statistics -> how the report names it
    "stop_words": "stop words, % of words",
    "repeated": "repeated tokens, % of tokens",
    "subwords": "subword pieces (##), % of tokens",
    "punctuation": "punctuation, % of tokens",
    "tokens": "tokens",
}
DISPLAY_CHARS = 160  # of a text in a table cell; the results file keeps it whole


def report(results: dict, figures: Path) -> list[str]:
    tasks = results["tasks"]
    any_task = next(iter(tasks.values()))
    inits = any_task["probe"]["inits"]
    lines = section_header(results, "Qualitative: what the distilled text says")
    lines += [
        "Every distilled example of the studied sets, decoded to its nearest tokens. *Probe confidence* is the "
        f"probability that full-data linear probes on the frozen features (mean ± std over {inits} probe seeds) give "
        "the example's class, in %, with their prediction when it is another class; the nearest real training "
        "examples are by cosine similarity of frozen features. Real text for comparison is random training text "
        "of the same class concatenated to the distilled examples' length, as distillation starts from; stop "
        "words are the share of words (WordPiece pieces joined, punctuation left out) in scikit-learn's English "
        "list, repeated tokens occurred earlier in the same example. Decoding keeps only tokens that survive a text "
        "round trip (`condense.distill.decode`), which rules `##` pieces out: distilled text has none by construction.",
        "",
    ]
    for name, task in tasks.items():
        lines += [f"### {name}", "", *example_table(task), "", *statistics_table(task), "", reading(name, task), ""]
    return lines


def example_table(task: dict) -> list[str]:
    several_seeds = len(task["seeds"]) > 1
    header = ["class", "soft label", "decoded distilled text", "probe confidence, %"]
    header.append("nearest real training examples (label, cosine)")
    if several_seeds:
        header.insert(1, "seed")
    lines = table_head(header)
    rows = sorted(((e["class"], seed, e) for seed, examples in task["seeds"].items() for e in examples),
                  key=lambda row: (task["label_names"].index(row[0]), row[1]))
    for name, seed, example in rows:
        predicted = Counter(example["predicted"]).most_common(1)[0][0]
        confidence = points(example["confidence"]) + ("" if predicted == name else f" (predicted: {predicted})")
        neighbours = "<br>".join(
            f"{cell(n['text'])} ({n['label']}, {n['similarity']:.2f})" for n in example["neighbours"]
        )
        soft = ", ".join(f"{label}: {p:.2f}" for label, p in example["soft_label"].items())
        cells = [cell(name), cell(soft), cell(example["text"]), confidence, neighbours]
        if several_seeds:
            cells.insert(1, seed)
        lines.append(table_row(cells))
    return lines


def statistics_table(task: dict) -> list[str]:
    distilled, real = task["overall"]["distilled"], task["overall"]["real"]
    lines = table_head(["mean ± std over examples",
                        f"distilled ({distilled['examples']} examples, {len(task['seeds'])} seeds)",
                        f"real, same length ({real['examples']} examples)"])
    for key, label in TOKEN_STATISTICS.items():
        distilled_value, real_value = _value(key, distilled["statistics"][key]), _value(key, real["statistics"][key])
        lines.append(table_row([label, distilled_value, real_value]))
    lines += [
        f"| probe confidence in the class, % | {points(distilled['confidence'])} | {points(real['confidence'])} |",
        f"| predicted as the class, % | {100 * distilled['predicted_as_class']:.0f} "
        f"| {100 * real['predicted_as_class']:.0f} |",
        f"| nearest real examples of the same class, % | {100 * distilled['neighbours_of_same_class']:.0f} | — |",
    ]
    return lines


def _value(key: str, summary: dict) -> str:
    return f"{summary['mean']:.1f} ± {summary['std']:.1f}" if key == "tokens" else points(summary)


def reading(name: str, task: dict) -> str:
    distilled, real = task["overall"]["distilled"], task["overall"]["real"]
    d, r = distilled["statistics"], real["statistics"]

    def pair(key: str, what: str) -> str:
        return f"{100 * d[key]['mean']:.0f}% {what} against {100 * r[key]['mean']:.0f}%"

    return (
        f"On {name}, distilled text has {pair('stop_words', 'stop words')} in real text of its class and length, "
        f"{pair('repeated', 'repeated tokens')}, {pair('subwords', 'subword pieces')} and "
        f"{pair('punctuation', 'punctuation')}. The probes (test accuracy {points(task['probe']['test_accuracy'])}%) "
        "give a "
        f"distilled example {100 * distilled['confidence']['mean']:.0f}% confidence in its class on average, real "
        f"text {100 * real['confidence']['mean']:.0f}%, and predict its class for "
        f"{100 * distilled['predicted_as_class']:.0f}% of distilled examples against "
        f"{100 * real['predicted_as_class']:.0f}% of real text; "
        f"{100 * distilled['neighbours_of_same_class']:.0f}% of their nearest real training examples are of the same "
        f"class (mean cosine {distilled['neighbour_similarity']['mean']:.2f})."
    )


def cell(text: str) -> str:
    """``text`` fit for a Markdown table cell: one line, pipes escaped, cut to :data:`DISPLAY_CHARS`."""
    text = " ".join(text.split())
    if len(text) > DISPLAY_CHARS:
        text = text[: DISPLAY_CHARS - 1].rstrip() + "…"
    return text.replace("|", "\\|")
