"""The ablation table is read back from what benchmarks/ablate_detector.py wrote, with where and
when it was measured; never typed in."""
import importlib.util
from argparse import Namespace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bench():
    spec = importlib.util.spec_from_file_location("ablate_detector", ROOT / "benchmarks" / "ablate_detector.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_ablation_csv_round_trip_and_replace(tmp_path):
    bench, path = _bench(), tmp_path / "ablate.csv"
    args = Namespace(arch="meso4", size=96, epochs=10, batch_size=32, data="demo engine v2")
    row = dict(name="  flip only", train=450, best=7, val=0.61234, test=0.5555, selfblend=0.7, swap=0.5,
               rerender=0.52, seconds=12.3, machine="x86_64 CPU, 2 cores, load 1.0", date="2026-01-02 03:04 UTC")
    bench.write_csv(path, row, args)
    bench.write_csv(path, dict(row, name="SB only", test=0.6), args)
    bench.write_csv(path, dict(row, test=0.7), args)  # same variant, arch, size, epochs, batch: replaced
    bench.write_csv(path, dict(row, test=0.8), Namespace(**{**vars(args), "batch_size": 8}))  # a new row
    caption, header, rows = bench.ablation_table(path)
    assert "benchmarks/ablate_detector.py" in caption and "x86_64 CPU, 2 cores" in caption and "2026-01-02" in caption
    assert "demo engine v2" in caption and "v1" not in caption
    assert [(r[0], r[header.index("batch")]) for r in rows] == [("SB only", "32"), ("flip only", "32"),
                                                                 ("flip only", "8")]
    assert rows[1][header.index("test AUC")] == "0.700" and rows[1][header.index("val AUC")] == "0.612"
    assert rows[1][header.index("seconds")] == "12" and rows[2][header.index("test AUC")] == "0.800"


def test_ablation_table_absent_is_none(tmp_path):
    assert _bench().ablation_table(tmp_path / "none.csv") is None
