"""`umop ablate`: the summary math on known numbers, the table, and an end-to-end run that a second call reuses."""

import math

import pytest

from conftest import read_csv, tiny_train_args
from umop_yolo.ablate.report import ci_cell, paired, summarize, table_markdown
from umop_yolo.ablate.runner import VARIANTS, parse_seeds, parse_variant_overrides, parse_variants, switches
from umop_yolo.ablate.stats import epochs_to_reach, mean_curve, mean_std, paired_difference, student_t_quantile
from umop_yolo.cfg import CFG_DIR, ConfigError, load_yaml
from umop_yolo.cli import main
from umop_yolo.eval.coco_eval import METRICS


def test_mean_and_sample_std_on_known_numbers():
    mean, std = mean_std([0.30, 0.32, 0.34])
    assert mean == pytest.approx(0.32) and std == pytest.approx(0.02)  # sqrt((0.02^2 + 0 + 0.02^2) / 2)
    assert mean_std([0.25]) == (0.25, 0.0)
    finals = {"baseline": {0: dict.fromkeys(METRICS, 0.1), 1: dict.fromkeys(METRICS, 0.3)},
              "pfl+lrp": {0: dict.fromkeys(METRICS, 0.4), 1: dict.fromkeys(METRICS, 0.4)}}
    stats = summarize(finals)
    assert stats["baseline"]["APs"] == pytest.approx((0.2, 0.1414213562))
    assert stats["pfl+lrp"]["AP"] == (0.4, 0.0)
    for none in (-1.0, math.nan):  # no ground truth of that size: pycocotools' -1, or nan as results.csv now holds
        no_large = summarize({"pfl": {0: {**dict.fromkeys(METRICS, 0.2), "APl": none}}})["pfl"]
        assert no_large["AP"] == (0.2, 0.0) and all(math.isnan(x) for x in no_large["APl"])
    mean, std = mean_curve([[0.1, 0.2], [0.3, 0.6]])  # two seeds, two epochs
    assert mean == pytest.approx([0.2, 0.4]) and std == pytest.approx([0.1414213562, 0.2828427125])


def test_epochs_to_reach_is_the_first_epoch_at_or_above_the_target():
    assert epochs_to_reach([0.1, 0.25, 0.2, 0.3], 0.25) == 2
    assert epochs_to_reach([0.1, 0.2], 0.25) is None


def test_table_has_mean_std_and_difference_to_baseline_in_percent():
    stats = {"baseline": {m: (0.357, 0.002) for m in METRICS}, "pfl": {m: (0.367, 0.001) for m in METRICS}}
    stats["pfl"]["APl"] = (math.nan, math.nan)
    table = table_markdown(stats, seeds=3, reach={"baseline": 12, "pfl": None}, switches=VARIANTS).splitlines()
    assert table[0] == "| variant | AP | AP50 | AP75 | APs | APm | APl | epochs to baseline AP |"
    assert table[2].startswith("| baseline (umop=false) | 35.7 ± 0.2 |") and table[2].endswith("| 12 |")
    assert table[3].startswith("| pfl (umop=true lrp=false) | 36.7 ± 0.1 (+1.0) |")
    assert table[3].endswith("| n/a | not reached |")


def test_student_t_quantiles_match_the_tables():
    for df, t in ((1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (30, 2.0423)):  # two-sided 95%
        assert student_t_quantile(0.975, df) == pytest.approx(t, abs=1e-4)


def test_paired_difference_and_its_95_percent_interval_on_known_numbers():
    # the 5-seed shapes ablation of the batch-8 defaults (AP %): per seed +4.9, +0.2, -1.0, +2.9, -0.7
    base = {0: 0.60, 1: 0.58, 2: 0.59, 3: 0.57, 4: 0.60}
    diffs = (0.049, 0.002, -0.010, 0.029, -0.007)
    d = paired_difference({s: base[s] + x for s, x in zip(base, diffs)}, base)
    assert d.mean == pytest.approx(0.0126) and d.diffs == pytest.approx(diffs)
    assert d.half_width == pytest.approx(2.7764 * 0.025501 / 5**0.5, rel=1e-3)  # t(0.975, 4) * s / sqrt(n)
    assert not d.significant and ci_cell(d) == "+1.3 [-1.9, +4.4]"
    gain = paired_difference({0: 0.52, 1: 0.53, 2: 0.55}, {0: 0.50, 1: 0.50, 2: 0.51})
    assert gain.significant and ci_cell(gain).endswith("]*")
    only_shared = paired_difference({0: 0.5, 7: 0.9, 1: math.nan}, {0: 0.4, 1: 0.3, 2: 0.1})  # seed 0 only
    assert only_shared.diffs == pytest.approx((0.1,)) and ci_cell(only_shared) == "+10.0 (1 seed)"


def test_table_has_a_paired_ci_column_for_every_variant_but_the_baseline():
    finals = {"baseline": {0: dict.fromkeys(METRICS, 0.30), 1: dict.fromkeys(METRICS, 0.32)},
              "pfl+lrp": {0: dict.fromkeys(METRICS, 0.33), 1: dict.fromkeys(METRICS, 0.34)}}
    table = table_markdown(summarize(finals), 2, pairs=paired(finals), switches=VARIANTS).splitlines()
    assert table[0].endswith("| ΔAP paired, 95% CI | ΔAP50 paired, 95% CI |")
    assert table[2].endswith("| - | - |")
    assert table[3].endswith("| +2.5 [-3.9, +8.9] | +2.5 [-3.9, +8.9] |")  # d = 3, 2: 12.71 x 0.71 / sqrt 2


def test_seeds_and_variants_are_checked():
    assert parse_seeds(3) == [0, 1, 2] and parse_seeds((4, 7)) == [4, 7]
    assert parse_variants("pfl+lrp,baseline") == ["pfl+lrp", "baseline"]
    assert parse_variants("baseline,pfl+lrp,pfl+lrp@vfl") == ["baseline", "pfl+lrp", "pfl+lrp@vfl"]
    assert switches("pfl+lrp@vfl") == {"umop": True, "lrp": True} and switches("pfl@x") == VARIANTS["pfl"]
    for bad in ("focal@x", "pfl+lrp@", "pfl+lrp@a/b", "pfl@x,pfl@x"):
        with pytest.raises(ConfigError, match="variants"):
            parse_variants(bad)
    for bad in (0, True, (1, 1), "3"):
        with pytest.raises(ConfigError, match="seeds"):
            parse_seeds(bad)
    with pytest.raises(ConfigError, match="variants"):
        parse_variants("baseline,focal")


def test_variant_overrides_are_taken_out_and_checked():
    args = {"epochs": 3, "baseline:cls": 0.5, "pfl:pfl_delta": 0.3}
    assert parse_variant_overrides(args, ["baseline", "pfl"]) == {"baseline": {"cls": 0.5}, "pfl": {"pfl_delta": 0.3}}
    assert args == {"epochs": 3}
    labelled = {"pfl+lrp@vfl:pfl_form": "varifocal", "pfl+lrp@vfl:cls": 1.0}
    assert parse_variant_overrides(labelled, ["pfl+lrp", "pfl+lrp@vfl"]) == {
        "pfl+lrp": {}, "pfl+lrp@vfl": {"pfl_form": "varifocal", "cls": 1.0}}
    for bad, match in (({"pfl+lrp:cls": 1.0}, "not one of the variants"), ({"pfl:umop": True}, "set by umop ablate"),
                       ({"pfl:clss": 1.0}, "closest valid key: 'cls'")):
        with pytest.raises(ConfigError, match=match):
            parse_variant_overrides(bad, ["baseline", "pfl"])


@pytest.mark.slow
def test_ablation_writes_table_curves_and_reuses_finished_runs(tiny_shapes, tmp_path, capsys):
    argv = ["ablate", *tiny_train_args(tiny_shapes, tmp_path, name="abl", imgsz=64), "seeds=2",
            "variants=baseline,pfl+lrp", "baseline:cls=0.7"]
    assert main(argv) == 0
    out = tmp_path / "abl"
    runs = ["baseline-seed0", "baseline-seed1", "pfl+lrp-seed0", "pfl+lrp-seed1"]
    assert [r["run"] for r in read_csv(out / "ablation.csv")] == runs
    table = (out / "ablation.md").read_text()
    assert "| baseline (umop=false cls=0.7) |" in table and "| pfl+lrp (umop=true lrp=true) |" in table
    assert "2 variants x 2 seed(s) (0, 1)" in table and "1 epochs" in table and "baseline: cls=0.7" in table
    assert "ΔAP paired, 95% CI" in table and "seed by seed" in table
    assert (out / "ap_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "pfl/gamma_P3" in read_csv(out / "pfl+lrp-seed1" / "results.csv")[0]  # the variants really differ
    assert not any(k.startswith("pfl/") for k in read_csv(out / "baseline-seed0" / "results.csv")[0])
    experiment_cls = load_yaml(CFG_DIR / "yolov8n_umop.yaml").get("cls", 0.5)  # the default cfg of umop ablate
    assert load_yaml(out / "baseline-seed0" / "args.yaml")["cls"] == 0.7
    assert load_yaml(out / "pfl+lrp-seed1" / "args.yaml")["cls"] == experiment_cls
    stamps = {r: (out / r / "results.csv").stat().st_mtime_ns for r in runs}
    capsys.readouterr()

    assert main(argv) == 0  # everything finished: nothing is retrained
    assert capsys.readouterr().out.count("done, reusing") == 4
    assert stamps == {r: (out / r / "results.csv").stat().st_mtime_ns for r in runs}

    assert main([*argv[:-3], "imgsz=96", "seeds=2", "variants=baseline"]) == 2  # other settings, same directory
    assert "imgsz" in capsys.readouterr().err
    assert main([*argv[:-1], "baseline:cls=0.5"]) == 2  # another cls gain for the baseline
    assert "baseline:cls" in capsys.readouterr().err
