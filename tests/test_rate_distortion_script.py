"""scripts/rate_distortion.py: variable- and fixed-rate curves, rate control counted."""

import csv
import importlib.util
import os

from conftest import REPO_ROOT


def load_script(name="rate_distortion"):
    path = os.path.join(REPO_ROOT, "scripts", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_points_curves_and_rate_control(variable_rate_run, tiny_run, tiny_data, tmp_path,
                                        capsys):
    out = tmp_path / "rd"
    images = os.path.join(str(tiny_data), "leftImg8bit", "val")
    code = load_script().main([
        "--model", f"vr={variable_rate_run}", "--model", f"fixed={tiny_run}",
        "--images", images, "--channels", "2,4,6,9", "--targets", "0.001,0.2,5",
        "--target-images", "2", "--out-dir", str(out)])
    assert code == 0
    points = read(out / "points.csv")
    assert [(p["method"], p["channels"]) for p in points] == [
        ("vr", "2"), ("vr", "4"), ("vr", "6"), ("fixed", "4")]
    rates = [float(p["bpp"]) for p in points[:3]]
    assert rates == sorted(rates) and all(p["images"] == "2" for p in points)
    control = {float(c["target_bpp"]): c for c in read(out / "rate_control.csv")}
    assert control[0.001]["below_range"] == "2" and control[0.001]["coded"] == "0"
    assert control[5.0]["coded"] == "2" and float(control[5.0]["channels"]) == 6
    assert all(c["over_target"] == "0" for c in control.values())
    assert len(read(out / "rows.csv")) == 2 * 4 + 2 * 2
    assert (out / "rate_distortion.png").stat().st_size > 1000
    # --refine: the rate-control files are refined, and still within their target.
    assert load_script().main([
        "--model", f"vr={variable_rate_run}", "--images", images, "--channels", "2",
        "--targets", "0.2", "--target-images", "1", "--refine", "1", "--seeds", "2",
        "--out-dir", str(tmp_path / "refined")]) == 0
    refined = read(tmp_path / "refined" / "rate_control.csv")
    assert refined[0]["coded"] == "1" and refined[0]["over_target"] == "0"

    # The card of a model to ship, from those figures.
    import json

    card_path = tmp_path / "card.json"
    assert load_script("model_card").main([
        "--name", "vr", "--method", "vr", "--rd", str(out), "--set", "tiny val",
        "--description", "a test", "--data", "synthetic", "--steps", "6",
        "--out", str(card_path)]) == 0
    card = json.loads(card_path.read_text())
    assert [v["channels"] for v in card["validation"]] == [2, 4, 6]
    assert card["rate"]["bpp_min"] == round(rates[0], 4)
    assert card["validation"][0]["summary"].startswith("tiny val, 2 channels: ")
