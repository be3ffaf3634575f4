import subprocess
import sys

from conftest import write_fake_medmnist

from medtl.cli import main


def test_data_info_lists_every_flag(tmp_path, capsys):
    write_fake_medmnist(tmp_path, "breastmnist")
    rc = main(["data", "info", "--root", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 1  # a file with a bad MD5 is reported and fails the command
    for flag in ("pathmnist", "chestmnist", "organsmnist", "breastmnist"):
        assert flag in out
    assert "BAD MD5" in out and str(tmp_path) in out


def test_data_verify_reports_failures(tmp_path, capsys):
    write_fake_medmnist(tmp_path, "breastmnist")
    assert main(["data", "verify", "--root", str(tmp_path)]) == 1
    assert "MD5 mismatch" in capsys.readouterr().out
    assert main(["data", "verify", "bloodmnist", "--size", "28", "--root", str(tmp_path)]) == 1
    assert "not found" in capsys.readouterr().out


def test_entry_point_runs(medmnist_root):
    out = subprocess.run([sys.executable, "-m", "medtl.cli", "data", "info", "--root", str(medmnist_root)],
                         capture_output=True, text=True, check=True).stdout
    assert "bloodmnist" in out and " ok " in out
