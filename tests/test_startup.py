"""Start-up: importing the command line loads no model code, and `lenet train` loads nothing it does not use
(benchmarks/startup.py measures the seconds)."""

import subprocess
import sys

from conftest import REPO


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}; import sys; print(' '.join(sys.modules))"], cwd=REPO,
                         capture_output=True, text=True, check=True)  # fmt: skip
    return set(out.stdout.split())


def test_importing_the_cli_loads_no_torch():
    loaded = _modules_after("import lenet.cli")
    assert "torch" not in loaded and "lenet.training.loop" not in loaded


def test_the_train_path_skips_user_data_sets_and_pil():
    loaded = _modules_after("import lenet.cli; lenet.cli.build_parser(); import lenet.data.load, lenet.training.loop")
    assert "lenet.training.loop" in loaded
    assert not loaded & {"lenet.data.user", "PIL"}  # folder: and csv: data sets load them when asked for


def test_the_public_api_still_has_every_name():
    import lenet

    for name in lenet.__all__:
        assert getattr(lenet, name) is not None
    assert {"train", "TrainConfig", "load", "predict"} <= set(dir(lenet))
