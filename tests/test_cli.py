import subprocess
import sys

import pytest

from dfcourse.cli import main


@pytest.mark.parametrize("cmd", [[], ["prepare"], ["demo-data"], ["course"]])
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main(cmd + ["--help"])
    assert e.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_prepare_cli_on_mini_ffpp(ffpp_mini, tmp_path):
    r = subprocess.run([sys.executable, "-m", "dfcourse", "prepare", "--ffpp", str(ffpp_mini),
                        "--out", str(tmp_path / "o"), "--frames", "2", "--size", "48",
                        "--methods", "FaceSwap"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o" / "index.csv").is_file() and "index written" in r.stdout


def test_prepare_cli_bad_root_is_a_clear_error(tmp_path, capsys):
    assert main(["prepare", "--ffpp", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "not a FaceForensics++ folder" in capsys.readouterr().err
    assert main(["prepare", "--out", str(tmp_path / "o")]) == 2


def test_demo_data_cli(tmp_path, capsys):
    assert main(["demo-data", "--out", str(tmp_path / "d"), "--size", "48", "--frames", "1"]) == 0
    assert (tmp_path / "d" / "index.csv").is_file()
