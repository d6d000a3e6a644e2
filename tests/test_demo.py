"""The README's main job, `gcompress demo`, end to end with two training steps."""

import os

from compression.data import write_synthetic_cityscapes
from compression.demo import DEMO_CONFIG, run_demo


def test_demo_trains_encodes_and_decodes(tmp_path):
    data = write_synthetic_cityscapes(
        str(tmp_path / "data"), splits={"train": 4, "val": 1},
        size=(DEMO_CONFIG.crop_height, DEMO_CONFIG.crop_width + 32), num_classes=0,
    )
    lines = []
    encoded, decoded = run_demo(str(tmp_path / "out"), data=data, steps=2,
                                log=lines.append, progress=False)
    out = tmp_path / "out"
    for name in ("demo.gcz", "original.png", "decoded.png", "run/config.json"):
        assert (out / name).exists(), name
    assert os.path.getsize(out / "demo.gcz") == len(encoded.data)
    assert decoded.shape == (DEMO_CONFIG.crop_height, DEMO_CONFIG.crop_width + 32, 3)
    assert encoded.bpp > 0
    assert any("bpp" in line and "PSNR" in line for line in lines)
    # Running it again resumes the same run instead of refusing the directory.
    run_demo(str(tmp_path / "out"), data=data, steps=3, log=lines.append, progress=False)
    assert any("resuming" in line for line in lines)
