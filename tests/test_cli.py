"""The `medtl` command end to end on synthetic data: files written, resume, errors."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from medtl_lib.cli import main


def test_train_writes_the_run_folder(synth_root, tmp_path, capsys):
    data = synth_root("sarscov2_ct", n_per_class=20, size=32)
    out = tmp_path / "run"
    args = ["train", "--dataset", "sarscov2_ct", "--data-dir", str(data), "--model", "test_resnet",
            "--weights", "none", "--img-size", "32", "--epochs", "2", "--batch-size", "8",
            "--num-workers", "0", "--seed", "1", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    for name in ("config.yaml", "split.csv", "history.csv", "best.pt", "metrics.json",
                 "predictions_test.csv", "predictions_val.csv", "predictions_train.csv"):
        assert (out / name).is_file(), name
    assert not (out / "last.pt").exists()
    m = json.loads((out / "metrics.json").read_text())
    for part in ("test", "val", "train"):
        assert {"accuracy", "precision_macro", "recall_macro", "f1_macro"} <= set(m[part])
    assert m["epochs_run"] == 2 and m["stopped_early"] in (True, False)
    split = pd.read_csv(out / "split.csv")
    assert split["split"].value_counts().to_dict() == {"train": 32, "val": 4, "test": 4}
    preds = pd.read_csv(out / "predictions_test.csv")
    assert set(preds["path"]) == set(split.loc[split["split"] == "test", "path"])
    assert m["test"]["accuracy"] == pytest.approx((preds["label"] == preds["pred"]).mean())
    printed = capsys.readouterr().out
    assert "epoch 2:" in printed and '"accuracy"' in printed
    # the same command again: complete, nothing retrained
    assert main(args) == 0
    assert "already complete" in capsys.readouterr().out
    # another configuration into the same folder is refused, naming the difference
    assert main([a if a != "2" else "3" for a in args]) == 2
    assert "epochs: 2 -> 3" in capsys.readouterr().err


def test_missing_data_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEDTL_DATA_DIR", raising=False)
    code = main(["train", "--dataset", "breakhis_400x", "--model", "test_resnet", "--weights",
                 "none", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "kaggle datasets download -d ambarish/breakhis" in err


def test_data_check_and_synth(tmp_path, capsys):
    assert main(["data", "synth", "brain_tumor_mri", "--out", str(tmp_path / "b"),
                 "--n-per-class", "4", "--size", "32"]) == 0
    (tmp_path / "b" / "Training" / "glioma" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    assert main(["data", "check", str(tmp_path / "b"), "--dataset", "brain_tumor_mri"]) == 0
    out = capsys.readouterr().out
    assert "glioma" in out and "Training/glioma/broken.jpg" in out and "[unreadable]" in out
    assert "usable: the warnings above" in out
    assert main(["data", "check", str(tmp_path / "b"), "--dataset", "sarscov2_ct"]) == 1
    assert "NOT USABLE" in capsys.readouterr().out


def test_python_dash_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "medtl_lib", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "train" in r.stdout and "bench" in r.stdout


def test_bench_train_reports_both_loops(synth_root, capsys):
    data = synth_root("brain_tumor_mri", n_per_class=20, size=32)
    assert main(["bench", "train", "--dataset", "brain_tumor_mri", "--data-dir", str(data),
                 "--model", "test_resnet", "--img-size", "32", "--batch-size", "8",
                 "--batches", "2", "--repeats", "2", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["timed_batches"] == 2 and len(report["kit_runs"]) == 2
    assert report["kit_images_per_s"] > 0 and report["bare_images_per_s"] > 0
    kit, bare = report["kit_images_per_s"], report["bare_images_per_s"]
    # both rates are rounded to 0.01 image/s: on a busy machine (a few images/s) that rounding
    # alone moves their quotient by up to 0.005/kit + 0.005/bare of itself
    assert report["ratio"] == pytest.approx(kit / bare, rel=1e-3 + 0.005 / kit + 0.005 / bare)


def test_audit_cli_and_duplicate_grouped_run(synth_root, tmp_path, capsys):
    src = synth_root("sarscov2_ct", n_per_class=20, size=32)
    data = tmp_path / "ct"
    shutil.copytree(src, data)
    covid = sorted((data / "COVID").iterdir())
    for i in range(4):  # the same scan twice: once under its own name, once under another
        shutil.copy(covid[i], data / "COVID" / f"copy {i}.png")
    assert main(["data", "audit", str(data), "--dataset", "sarscov2_ct", "--out",
                 str(tmp_path / "audit")]) == 0
    assert "exact: 4 groups" in capsys.readouterr().out
    dup = pd.read_csv(tmp_path / "audit" / "duplicates.csv")
    assert list(dup.columns[:5]) == ["group", "kind", "path", "label", "split"]
    assert (dup["kind"] == "exact").sum() == 8
    out = tmp_path / "run"
    assert main(["train", "--dataset", "sarscov2_ct", "--data-dir", str(data), "--model",
                 "test_resnet", "--weights", "none", "--img-size", "32", "--epochs", "1",
                 "--batch-size", "8", "--num-workers", "0", "--out", str(out), "--no-progress"]) == 0
    info = json.loads((out / "split_info.json").read_text())
    assert info["group_by"] == "duplicates" and info["merged_groups"] == 4
    split = pd.read_csv(out / "split.csv")
    assert (split.groupby("group")["split"].nunique() == 1).all()
    assert (out / "duplicates.csv").is_file()
    assert json.loads((out / "metrics.json").read_text())["group_by"] == "duplicates"


def test_bad_files_are_skipped_and_listed_or_stop_a_strict_run(synth_root, tmp_path, capsys):
    src = synth_root("sarscov2_ct", n_per_class=20, size=32)
    data = tmp_path / "ct"
    shutil.copytree(src, data)
    good = (data / "COVID" / "Covid (1).png").read_bytes()
    (data / "COVID" / "cut.png").write_bytes(good[: len(good) // 2])  # valid header, no pixels
    (data / "non-COVID" / "empty.png").write_bytes(b"")
    args = ["train", "--dataset", "sarscov2_ct", "--data-dir", str(data), "--model", "test_resnet",
            "--weights", "none", "--img-size", "32", "--epochs", "1", "--batch-size", "8",
            "--num-workers", "0", "--no-progress"]
    with pytest.warns(UserWarning, match="2 unreadable image"):
        assert main(args + ["--out", str(tmp_path / "lenient")]) == 0
    bad = pd.read_csv(tmp_path / "lenient" / "bad_files.csv")
    assert sorted(bad["path"]) == ["COVID/cut.png", "non-COVID/empty.png"]
    assert json.loads((tmp_path / "lenient" / "metrics.json").read_text())["bad_files"] == 2
    split = pd.read_csv(tmp_path / "lenient" / "split.csv")
    assert "COVID/cut.png" not in set(split["path"]) and len(split) == 40
    capsys.readouterr()
    assert main(args + ["--strict", "--out", str(tmp_path / "strict")]) == 2
    err = capsys.readouterr().err
    assert "2 unreadable image" in err and "--strict" in err


# ---------------------------------------------------------------- mistakes answered at once
@pytest.mark.parametrize("argv, message", [
    (["--dataset", "brain_tumor_mrii", "--model", "resnet"], "Did you mean 'brain_tumor_mri'"),
    (["--dataset", "brain_tumor_mri", "--model", "resnett"], "Did you mean: resnet"),
])
def test_a_typo_in_dataset_or_model_is_answered_before_torch_is_imported(argv, message,
                                                                         tmp_path):
    from medtl_lib.models.names import timm_architectures

    timm_architectures()  # the name list a first install writes (scripts/venv.sh)
    probe = ("import sys; from medtl_lib.cli import main; rc = main(sys.argv[1:]); "
             "print('rc', rc, 'torch imported' if 'torch' in sys.modules else 'no torch')")
    r = subprocess.run([sys.executable, "-c", probe, "train", *argv, "--out", str(tmp_path / "r")],
                       capture_output=True, text=True, timeout=120)
    assert "rc 2 no torch" in r.stdout, r.stdout + r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "r").exists()  # nothing written for a refused command


def test_model_names_come_from_a_per_version_list(tmp_path, monkeypatch):
    from medtl_lib.models import names

    monkeypatch.setenv("MEDTL_CACHE_DIR", str(tmp_path))
    known = names.timm_architectures()  # timm is imported in this process: the list is written
    files = list((tmp_path / "names").glob("timm-*.json"))
    assert len(files) == 1 and "resnet50" in known and "test_resnet" in known
    assert set(json.loads(files[0].read_text())) == known
    assert names.resolve_model_name("resnet50.tv_in1k") == ("resnet50.tv_in1k", None)
    with pytest.raises(ValueError, match="Unknown model 'resnet5O'"):
        names.resolve_model_name("resnet5O")


@pytest.mark.parametrize("text, message", [
    (None, "did you mean 'smoke'"),
    ("name: x\ndatasets: [sarscov2_ct\n", "is not valid YAML"),
    ("name: x\ndatasets: [sarscov2_ct]\nmodels: [resnet]\nseedz: [1]\n", "unknown profile key"),
    ("- just\n- a list\n", "a profile is a YAML mapping"),
])
def test_medtl_run_mistakes_are_one_line_and_exit_2(text, message, tmp_path, capsys):
    target = "smok"
    if text is not None:
        target = str(tmp_path / "p.yaml")
        (tmp_path / "p.yaml").write_text(text)
    assert main(["run", target, "--runs-dir", str(tmp_path / "runs"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
