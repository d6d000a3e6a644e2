"""Write the model card of a model to ship, from measured rate-distortion figures.

Usage (from the repository root)::

    python scripts/model_card.py --name street --method vr --rd rd_camvid \\
        --description "..." --data "..." --steps 9000 --out card.json

``--rd`` is an output folder of ``scripts/rate_distortion.py`` (repeat it
for several validation sets, each with ``--set NAME``); the card gets the
rate range the model reached and one validation line per set and rate, the
fields ``gcompress models`` shows.  Then ship the model with
``gcompress export RUN compression/models/NAME --card card.json``.
"""

import argparse
import csv
import json
import os
import sys


def _rows(path, method):
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if r["method"] == method]


def card(name, method, rd_dirs, sets, description, data, steps):
    validation, rates = [], []
    for rd, label in zip(rd_dirs, sets, strict=True):
        points = _rows(os.path.join(rd, "points.csv"), method)
        if not points:
            raise SystemExit(f"{rd}/points.csv has no rows of method {method!r}")
        for p in points:
            rates.append(float(p["bpp"]))
            validation.append({
                "set": label, "images": int(p["images"]), "channels": int(p["channels"]),
                "bpp": round(float(p["bpp"]), 4), "psnr": round(float(p["psnr"]), 2),
                "ms_ssim": round(float(p["ms_ssim"]), 4),
                **({"chroma_error": round(float(p["chroma_error"]), 2)}
                   if p.get("chroma_error") else {}),
                "summary": f"{label}, {p['channels']} channels: {float(p['bpp']):.4f} bpp, "
                           f"PSNR {float(p['psnr']):.2f} dB, MS-SSIM {float(p['ms_ssim']):.4f} "
                           f"(mean of {p['images']} images, real files)"})
    summary = (f"{min(rates):.3f}-{max(rates):.3f} bpp measured (whole files); "
               "'encode --bpp X' picks the most channels that fit X")
    return {"name": name, "description": description, "data": data, "steps": steps,
            "rate": {"summary": summary, "bpp_min": round(min(rates), 4),
                     "bpp_max": round(max(rates), 4)},
            "validation": validation}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--method", required=True, help="the model's name in the rd folders")
    parser.add_argument("--rd", action="append", required=True)
    parser.add_argument("--set", action="append", default=None,
                        help="name of each --rd's validation set (default: the folder name)")
    parser.add_argument("--description", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    sets = args.set or [os.path.basename(os.path.normpath(d)) for d in args.rd]
    result = card(args.name, args.method, args.rd, sets, args.description, args.data,
                  args.steps)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(json.dumps(result["rate"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
