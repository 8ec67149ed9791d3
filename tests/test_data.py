"""Tests for condense.data.tasks: the real shared datasets, user files, every error, the hub fallback."""

from __future__ import annotations

import dataclasses
import gzip
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import datasets
import pandas as pd
import pytest

import condense.data.tasks as data
from condense.data.tasks import DataError, Task, check_examples_per_class, clean_text, load_task, task_from_config

SHARED = data.default_data_dir()


def write_csv_gz(path: Path, rows: list[tuple], header: str = "text,label") -> Path:
    lines = [header] + [",".join(json.dumps(v) if isinstance(v, str) else str(v) for v in row) for row in rows]
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def user_folder(tmp_path: Path, train: list[tuple], test: list[tuple], labels: list[str] | None = None) -> Path:
    folder = tmp_path / "mydata"
    folder.mkdir()
    write_csv_gz(folder / "train.csv.gz", train)
    write_csv_gz(folder / "test.csv.gz", test)
    if labels is not None:
        (folder / "info.json").write_text(json.dumps({"labels": labels}), encoding="utf-8")
    return folder


TRAIN = [("good film", 1), ("bad film", 0), ("great", 1), ("awful", 0)]
TEST = [("fine", 1), ("poor", 0)]


def assert_task_shape(task: Task) -> None:
    for split in (task.train, task.test):
        assert split.column_names == ["text", "label"]
        assert split.features["label"].dtype == "int64"
        assert split.features["text"].dtype == "string"


# ---------------------------------------------------------------- real data


def test_ag_news_full_real_counts():
    task = load_task("ag_news")
    assert task.label_names == ["World", "Sports", "Business", "Sci/Tech"]
    assert task.num_classes == 4
    assert (len(task.train), len(task.test)) == (12000, 7600)
    assert Counter(task.train["label"]) == {0: 3000, 1: 3000, 2: 3000, 3: 3000}
    assert task.source == str(SHARED / "ag_news")
    assert_task_shape(task)


def test_rotten_tomatoes_full_real_counts_and_validation_split():
    task = load_task("rotten_tomatoes")
    assert task.label_names == ["neg", "pos"]
    assert (len(task.train), len(task.test)) == (8530, 1066)
    assert Counter(task.test["label"]) == {0: 533, 1: 533}
    assert_task_shape(task)
    assert len(load_task("rotten_tomatoes", test_split="validation").test) == 1066


def test_sst2_subsampled():
    task = load_task("sst2", max_train_examples=1000, max_test_examples=100)
    assert task.label_names == ["negative", "positive"]
    assert (len(task.train), len(task.test)) == (1000, 100)
    # 29,780 negative / 37,569 positive in the full split.
    assert Counter(task.train["label"]) == {0: 442, 1: 558}
    assert_task_shape(task)


def test_imdb_clean_html_removes_line_breaks():
    raw = load_task("imdb", max_train_examples=300, max_test_examples=300)
    assert any("<br />" in t for t in raw.train["text"])
    task = load_task("imdb", clean_html=True, max_train_examples=300, max_test_examples=300)
    assert task.label_names == ["neg", "pos"]
    assert (len(task.train), len(task.test)) == (300, 300)
    assert not any("<br" in t for t in list(task.train["text"]) + list(task.test["text"]))
    assert_task_shape(task)


def test_task_presets_load():
    from condense.config.parsing import task_config

    rotten = task_config("rotten_tomatoes")
    assert rotten.max_length == 64  # a tokeniser key, ignored by load_task
    task = task_from_config(dataclasses.asdict(rotten))
    assert task.name == "rotten_tomatoes" and len(task.train) == 8530
    imdb = task_config("imdb")
    assert (imdb.clean_html, imdb.max_length, imdb.max_train_examples) == (True, 128, 10000)


def test_a_config_missing_a_mandatory_value_is_a_data_error():
    from omegaconf import OmegaConf

    with pytest.raises(DataError, match="task config is missing a required value: .*path"):
        task_from_config(OmegaConf.create({"path": "???", "text_column": "text"}))


def test_local_preset_with_path_is_named_after_its_folder(tmp_path):
    from condense.config.parsing import task_config

    folder = user_folder(tmp_path, TRAIN, TEST, labels=["neg", "pos"])
    task = task_from_config(dataclasses.asdict(task_config({"path": str(folder)})))
    assert task.name == "mydata" and task.label_names == ["neg", "pos"] and len(task.train) == 4


# ---------------------------------------------------------------- task names


def test_a_task_without_a_name_is_named_after_its_folder_or_its_info_json(tmp_path):
    plain = user_folder(tmp_path, TRAIN, TEST)
    assert load_task(path=str(plain)).name == "mydata"
    assert task_from_config({"name": None, "path": str(plain)}).name == "mydata"
    assert task_from_config({"path": str(plain)}).name == "mydata"
    (plain / "info.json").write_text(json.dumps({"name": "film_reviews", "labels": ["neg", "pos"]}), encoding="utf-8")
    task = load_task(path=str(plain))
    assert (task.name, task.label_names) == ("film_reviews", ["neg", "pos"])
    assert load_task("chosen", path=str(plain)).name == "chosen"  # a given name wins


def test_two_local_folders_get_different_names(tmp_path):
    names = []
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        names.append(load_task(path=str(user_folder(tmp_path / sub, TRAIN, TEST).rename(tmp_path / sub / f"set_{sub}"))).name)
    assert names == ["set_a", "set_b"]


def test_explicit_files_are_named_after_the_train_file(tmp_path):
    train = write_jsonl(tmp_path / "reviews.jsonl", [{"text": "x", "label": 0}, {"text": "y", "label": 1}])
    assert load_task(train_file=str(train), test_file=str(train)).name == "reviews"
    with gzip.open(tmp_path / "tweets.csv.gz", "wt") as f:
        f.write("text,label\nx,0\n")
    assert data.default_task_name(train_file=str(tmp_path / "tweets.csv.gz")) == "tweets"
    # The train file names the task even when a folder (and its info.json name) is given for the other split.
    folder = user_folder(tmp_path, TRAIN, TEST)
    (folder / "info.json").write_text(json.dumps({"name": "folder_name"}), encoding="utf-8")
    assert data.default_task_name(path=str(folder), train_file=str(train)) == "reviews"


def test_default_task_name_reads_only_info_json(tmp_path, monkeypatch):
    folder = tmp_path / "not_yet_downloaded"
    assert data.default_task_name(path=str(folder)) == "not_yet_downloaded"  # nothing there to read
    folder.mkdir()
    (folder / "info.json").write_text(json.dumps({"name": "news"}), encoding="utf-8")
    assert data.default_task_name(path=str(folder)) == "news"  # no split files needed
    assert data.default_task_name(path=str(folder / "sub" / "..")) == "news"
    monkeypatch.chdir(tmp_path)
    assert data.default_task_name(path=".") == tmp_path.name
    assert data.default_task_name(path="not_yet_downloaded/") == "news"


@pytest.mark.parametrize("bad", ["", "  ", "a/b", 7, ["x"]])
def test_a_bad_info_json_name_names_the_file_and_value(tmp_path, bad):
    folder = user_folder(tmp_path, TRAIN, TEST)
    (folder / "info.json").write_text(json.dumps({"name": bad}), encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_task(path=str(folder))
    message = str(err.value)
    assert str(folder / "info.json") in message and '"name"' in message and repr(bad) in message


def test_a_task_needs_a_name_or_data_to_be_named_after():
    with pytest.raises(DataError, match=r"a task needs a name.*path=.*train_file="):
        load_task()
    with pytest.raises(DataError, match=r"a task needs a name"):
        task_from_config({"name": None, "data_dir": "anywhere"})


# ---------------------------------------------------------------- user data


def test_user_folder_with_info_json(tmp_path):
    folder = user_folder(tmp_path, TRAIN, TEST, labels=["neg", "pos"])
    task = load_task("mine", path=str(folder))
    assert task.label_names == ["neg", "pos"]
    assert task.train["text"] == ["good film", "bad film", "great", "awful"]
    assert task.train["label"] == [1, 0, 1, 0]
    assert task.source == str(folder)
    assert_task_shape(task)


def test_user_folder_without_info_json_uses_integer_names(tmp_path):
    folder = user_folder(tmp_path, TRAIN + [("meh", 2)], TEST)
    assert load_task("mine", path=str(folder)).label_names == ["0", "1", "2"]


def test_label_names_argument_wins_over_info_json(tmp_path):
    folder = user_folder(tmp_path, TRAIN, TEST, labels=["neg", "pos"])
    assert load_task("mine", path=str(folder), label_names=["bad", "good"]).label_names == ["bad", "good"]


def test_integral_float_labels_accepted(tmp_path):
    folder = user_folder(tmp_path, [("a", "1.0"), ("b", "0")], [("c", 1.0)])
    task = load_task("mine", path=str(folder))
    assert task.train["label"] == [1, 0] and task.test["label"] == [1]


def test_jsonl_files_with_string_labels_and_custom_columns(tmp_path):
    train = write_jsonl(tmp_path / "tr.jsonl", [
        {"review": "loved it", "sentiment": "pos", "id": 1},
        {"review": "hated it", "sentiment": "neg", "id": 2},
        {"review": "so-so", "sentiment": "neutral", "id": 3},
    ])
    test = write_jsonl(tmp_path / "te.jsonl", [{"review": "ok", "sentiment": "neutral", "id": 4}])
    task = load_task("mine", train_file=str(train), test_file=str(test), text_column="review", label_column="sentiment")
    assert task.label_names == ["neg", "neutral", "pos"]  # sorted unique strings
    assert task.train["label"] == [2, 0, 1]
    assert task.test["label"] == [1]
    assert_task_shape(task)


def test_string_labels_mapped_through_given_names(tmp_path):
    train = write_jsonl(tmp_path / "tr.jsonl", [{"text": "x", "label": "pos"}, {"text": "y", "label": "neg"}])
    task = load_task("mine", train_file=str(train), test_file=str(train), label_names=["pos", "neg"])
    assert task.train["label"] == [0, 1]


def test_parquet_and_json_files(tmp_path):
    pd.DataFrame({"sentence": ["a", "b", "c"], "y": [0, 1, 1]}).to_parquet(tmp_path / "train.parquet")
    (tmp_path / "test.json").write_text(json.dumps([{"sentence": "d", "y": 1}]), encoding="utf-8")
    task = load_task(
        "mine", train_file=str(tmp_path / "train.parquet"), test_file=str(tmp_path / "test.json"),
        text_column="sentence", label_column="y", label_names=["no", "yes"],
    )
    assert task.train["text"] == ["a", "b", "c"] and task.train["label"] == [0, 1, 1]
    assert task.test["label"] == [1]
    assert_task_shape(task)


def test_clean_text():
    assert clean_text("  a<br />b<br/>c<BR>d \n\t e  ") == "a b c d e"


def test_ignored_keys_are_accepted(tmp_path):
    folder = user_folder(tmp_path, TRAIN, TEST)
    assert task_from_config({"name": "mine", "path": str(folder), "max_length": 64}).num_classes == 2


def test_default_data_dir_and_env(monkeypatch, tmp_path):
    monkeypatch.delenv("CONDENSE_DATA_DIR", raising=False)
    assert data.default_data_dir() == Path(data.__file__).resolve().parents[3] / "shared" / "datasets"
    user_folder(tmp_path, TRAIN, TEST, labels=["neg", "pos"]).rename(tmp_path / "toy")
    monkeypatch.setenv("CONDENSE_DATA_DIR", str(tmp_path))
    assert data.default_data_dir() == tmp_path
    task = load_task("toy")
    assert task.source == str(tmp_path / "toy") and len(task.train) == 4


# ---------------------------------------------------------------- subsampling


def test_stratified_subsample_keeps_proportions_and_is_deterministic(tmp_path):
    train = [(f"t{i}", 0 if i < 300 else (1 if i < 900 else 2)) for i in range(1000)]  # 30% / 60% / 10%
    folder = user_folder(tmp_path, train, TEST)
    first = load_task("mine", path=str(folder), max_train_examples=100, seed=3)
    again = load_task("mine", path=str(folder), max_train_examples=100, seed=3)
    other = load_task("mine", path=str(folder), max_train_examples=100, seed=4)
    assert Counter(first.train["label"]) == {0: 30, 1: 60, 2: 10}
    assert first.train["text"] == again.train["text"]
    assert first.train["text"] != other.train["text"]
    positions = [int(t[1:]) for t in first.train["text"]]
    assert positions == sorted(positions)  # original order kept
    assert len(first.test) == len(TEST)  # None = whole split


def test_subsample_keeps_rare_class():
    labels = [0] * 995 + [1] * 5
    keep = data.stratified_indices(labels, 10, seed=0)
    assert len(keep) == 10 and sum(labels[i] for i in keep) == 1


# ---------------------------------------------------------------- errors


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match=r"data folder .*nowhere does not exist; it should hold train\.<ext> and test\.<ext>"):
        load_task("mine", path=str(tmp_path / "nowhere"))


def test_missing_split_file_names_split_and_candidates(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    write_csv_gz(folder / "train.csv.gz", TRAIN)
    with pytest.raises(DataError) as err:
        load_task("mine", path=str(folder))
    message = str(err.value)
    assert "'test'" in message and str(folder) in message and "test.csv.gz" in message and "test.parquet" in message


def test_missing_explicit_file(tmp_path):
    train = write_jsonl(tmp_path / "tr.jsonl", [{"text": "a", "label": 0}])
    with pytest.raises(DataError, match=r"test_file .*te\.jsonl does not exist \(split 'test'\)"):
        load_task("mine", train_file=str(train), test_file=str(tmp_path / "te.jsonl"))


def test_unsupported_extension(tmp_path):
    (tmp_path / "tr.txt").write_text("a\n")
    with pytest.raises(DataError, match=r"tr\.txt.*unsupported"):
        load_task("mine", train_file=str(tmp_path / "tr.txt"), test_file=str(tmp_path / "tr.txt"))


def test_no_local_copy_and_no_hub(tmp_path):
    with pytest.raises(DataError, match="no hub fallback") as err:
        load_task("ghost", data_dir=str(tmp_path))
    assert str(tmp_path / "ghost") in str(err.value)


def test_missing_column_lists_existing(tmp_path):
    folder = user_folder(tmp_path, TRAIN, TEST)
    with pytest.raises(DataError) as err:
        load_task("mine", path=str(folder), text_column="sentence")
    message = str(err.value)
    assert "train.csv.gz" in message and "'sentence'" in message and "'text', 'label'" in message


def test_empty_text_names_row_and_column(tmp_path):
    folder = user_folder(tmp_path, [("a", 0), ("b", 1), ("   ", 0)], TEST)
    with pytest.raises(DataError) as err:
        load_task("mine", path=str(folder))
    message = str(err.value)
    assert "train.csv.gz" in message and "'text'" in message and "row 3" in message and "data row" in message


def test_text_empty_after_clean_html(tmp_path):
    folder = user_folder(tmp_path, TRAIN, [("ok", 0), ("<br /><br />", 1)])
    load_task("mine", path=str(folder))
    with pytest.raises(DataError, match=r"test\.csv\.gz.*clean_html.*row 2"):
        load_task("mine", path=str(folder), clean_html=True)


@pytest.mark.parametrize(
    ("bad", "shown"),
    [(5, "5"), (-1, "-1"), ("1.5", "1.5"), ("abc", "abc"), ("", "missing")],
)
def test_bad_label_names_file_row_and_value(tmp_path, bad, shown):
    folder = user_folder(tmp_path, TRAIN, [("x", 0), ("y", bad)], labels=["neg", "pos"])
    with pytest.raises(DataError) as err:
        load_task("mine", path=str(folder))
    message = str(err.value)
    assert "test.csv.gz" in message and "row 2" in message and shown in message and "'label'" in message


def test_non_integer_label_with_integer_labels_and_no_names(tmp_path):
    folder = user_folder(tmp_path, TRAIN + [("z", "abc")], TEST)
    with pytest.raises(DataError, match=r"train\.csv\.gz.*row 5.*'abc'"):
        load_task("mine", path=str(folder))


def test_string_label_not_among_names(tmp_path):
    train = write_jsonl(tmp_path / "tr.jsonl", [{"text": "x", "label": "pos"}, {"text": "y", "label": "meh"}])
    with pytest.raises(DataError, match=r"tr\.jsonl.*row 2.*'meh'"):
        load_task("mine", train_file=str(train), test_file=str(train), label_names=["neg", "pos"])


def test_huge_integer_label(tmp_path):
    folder = user_folder(tmp_path, TRAIN + [("z", 10**9)], TEST)
    with pytest.raises(DataError, match=r"train\.csv\.gz.*1000000000.*row 5"):
        load_task("mine", path=str(folder))


def test_class_without_training_example(tmp_path):
    folder = user_folder(tmp_path, [("a", 0), ("b", 2)], TEST, labels=["neg", "mid", "pos"])
    with pytest.raises(DataError, match=r"train\.csv\.gz.*class 1 \('mid'\)"):
        load_task("mine", path=str(folder))


def test_bad_info_json(tmp_path):
    folder = user_folder(tmp_path, TRAIN, TEST)
    (folder / "info.json").write_text("{not json")
    with pytest.raises(DataError, match=r"info\.json: cannot read as JSON"):
        load_task("mine", path=str(folder))


def test_check_examples_per_class(tmp_path):
    folder = user_folder(tmp_path, TRAIN + [("c", 1)], TEST, labels=["neg", "pos"])
    task = load_task("mine", path=str(folder))
    check_examples_per_class(task, 2)
    with pytest.raises(DataError) as err:
        check_examples_per_class(task, 3)
    message = str(err.value)
    assert "class 0 ('neg') has 2" in message and "class 1" not in message and str(folder) in message


# ---------------------------------------------------------------- hub fallback


def test_hub_fallback_renames_columns(monkeypatch, tmp_path):
    features = datasets.Features({"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["negative", "positive"]), "idx": datasets.Value("int32")})
    fake = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"sentence": ["bad", "good", "fine"], "label": [0, 1, 1], "idx": [0, 1, 2]}, features=features),
        "validation": datasets.Dataset.from_dict({"sentence": ["meh"], "label": [0], "idx": [0]}, features=features),
    })
    calls = []

    def fake_load_dataset(path, name=None, **kwargs):
        calls.append((path, name))
        return fake

    monkeypatch.setattr(data.datasets, "load_dataset", fake_load_dataset)
    hub = {"path": "stanfordnlp/sst2", "name": None, "text_column": "sentence", "label_column": "label",
           "train_split": "train", "test_split": "validation"}
    task = load_task("sst2", data_dir=str(tmp_path), hub=hub)
    assert calls == [("stanfordnlp/sst2", None)]
    assert task.label_names == ["negative", "positive"]
    assert task.train["text"] == ["bad", "good", "fine"] and task.test["text"] == ["meh"]
    assert task.source == "stanfordnlp/sst2"
    assert_task_shape(task)

    with pytest.raises(DataError, match=r"stanfordnlp/sst2.*'test'.*validation"):
        load_task("sst2", data_dir=str(tmp_path), hub={**hub, "test_split": "test"})


def test_hub_failure_is_a_data_error(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(data.datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"fancyzhx/ag_news.*offline"):
        load_task("ag_news", data_dir=str(tmp_path), hub={"path": "fancyzhx/ag_news"})


def test_the_committed_own_data_folder_is_what_its_script_builds_and_loads_as_six_balanced_classes(tmp_path):
    root = Path(__file__).resolve().parents[1]
    committed = root / "benchmarks" / "data" / "source_sentiment"
    subprocess.run([sys.executable, str(root / "benchmarks" / "make_own_dataset.py"), "--shared", str(SHARED),
                    "--out", str(tmp_path)], check=True, capture_output=True)
    for name in ("train.csv.gz", "test.csv.gz"):  # the rows, not the gzip header's time stamp
        assert gzip.decompress((tmp_path / name).read_bytes()) == gzip.decompress((committed / name).read_bytes())
    assert (tmp_path / "info.json").read_text() == (committed / "info.json").read_text()

    task = load_task(path=str(committed))
    assert task.name == "source_sentiment" and len(task.label_names) == 6
    assert Counter(task.train["label"]) == {label: 300 for label in range(6)}
    assert Counter(task.test["label"]) == {label: 100 for label in range(6)}
    assert not set(task.train["text"]) & set(task.test["text"])
