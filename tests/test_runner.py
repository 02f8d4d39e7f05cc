import nbformat
import pytest


@pytest.mark.slow
def test_run_course_reports_pass_fail_mode_and_headline(tmp_path, monkeypatch):
    from dfcourse.runner import run_course

    monkeypatch.setenv("DFCOURSE_HOME", str(tmp_path))
    monkeypatch.setenv("DFCOURSE_QUICK", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "notebooks").mkdir()
    good = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from dfcourse import course as dc\nfrom dfcourse.runner import record\n"
        "c = dc.start('01_ok')\nrecord(c, weights='random init', auc=0.75)")])
    bad = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("raise RuntimeError('boom')")])
    nbformat.write(good, tmp_path / "notebooks" / "01_ok.ipynb")
    nbformat.write(bad, tmp_path / "notebooks" / "02_bad.ipynb")
    results = run_course(tmp_path, timeout=120)
    assert [r["status"] for r in results] == ["pass", "FAIL"]
    report = (tmp_path / "runs" / "report.md").read_text()
    assert "01_ok" in report and "quick" in report and "random init" in report and "auc=0.750" in report
    assert "02_bad" in report and "FAIL" in report and "boom" in report
    assert (tmp_path / "runs" / "executed" / "02_bad.ipynb").is_file()  # kept for the grader to read
    assert "total: " in report and "notebook(s)" in report


def test_total_line_weighs_a_whole_quick_run_against_the_budget():
    from dfcourse.runner import total_line

    quick = [{"seconds": 50.0, "mode": "quick"}] * 5
    assert total_line(quick) == "total: 4 m 10 s for 5 notebook(s) (quick-mode budget 6 min on a 2-core CPU: within)"
    assert total_line([{"seconds": 80.0, "mode": "quick"}] * 5).endswith("OVER)")
    assert "budget" not in total_line(quick[:2]) and "budget" not in total_line([{"seconds": 9.0, "mode": "full"}] * 5)
