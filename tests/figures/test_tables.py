import math

import pytest

from avatarme_edu.figures.tables import format_number, metrics_table


def test_format_number():
    assert format_number(31.4159) == "31.42"
    assert format_number(0.812345) == "0.8123"
    assert format_number(None) == "-" and format_number(math.nan) == "-"
    assert format_number(math.inf) == "inf"


def test_metrics_table_rows_columns_and_best():
    rows = {"network": {"psnr": 31.2, "ssim": 0.81}, "bicubic": {"psnr": 30.1, "ssim": 0.83}, "x": {"psnr": 29.0}}
    md = metrics_table(rows, best={"psnr": "higher", "ssim": "higher"})
    lines = md.splitlines()
    assert lines[0] == "| method | psnr | ssim |"
    assert lines[2] == "| network | **31.20** | 0.81 |"
    assert lines[3] == "| bicubic | 30.10 | **0.83** |"
    assert lines[4] == "| x | 29.00 | - |"
    low = metrics_table({"a": {"deg": 0.5}, "b": {"deg": 0.4}}, best={"deg": "lower"})
    assert "| b | **0.4** |" in low
    with pytest.raises(ValueError, match="empty"):
        metrics_table({})
    with pytest.raises(ValueError, match="'higher' or 'lower'"):
        metrics_table(rows, best={"psnr": "up"})
