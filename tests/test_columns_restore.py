"""ColumnLog.restore_rows (both twins): rows whose sequence and position are decided by
the caller (a durable store rebuilding its index), gaps allowed, all or nothing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from nova.errors import ValidationError


def _log(core: Any) -> tuple[Any, int, int, int]:
    log = core.ColumnLog(4)
    return log, log.stream_code("a"), log.stream_code("b"), log.type_code("t")


def test_restore_rows_with_gaps(core: Any) -> None:
    log, a, b, t = _log(core)
    assert log.restore_rows([a, b, a], [t, t, t], [5, 3, 7], [2, 5, 9], [3, 1, 8]) == 3
    assert log.last_seq == 9 and len(log) == 3
    assert log.stream_info(a) == (2, 3, 8, 0)
    w = log.window(None, None)
    assert (w.ts.tolist(), w.seq.tolist(), w.pos.tolist()) == ([3, 5, 7], [5, 2, 9], [1, 3, 8])
    assert log.stream_slice(a, 3).pos.tolist() == [8]
    assert log.since_sequence(4).seq.tolist() == [5, 9]
    assert log.evict_oldest(a, 1) == 1 and log.stream_info(a) == (1, 8, 8, 1)
    # ordinary appends continue after the restored numbers
    assert log.append_columns(b, "t", [1]) == 2
    assert log.last_seq == 10


def test_restore_rows_is_all_or_nothing(core: Any) -> None:
    log, a, b, t = _log(core)
    log.restore_rows([a], [t], [1], [5], [5])
    cases = [
        (([a], [t], [1], [5], [6]), "sequences increasing from 6"),
        (([a], [t], [1], [7], [5]), "positions increasing past the stream's last position 5, got 5"),
        (([b, b], [t, t], [1, 2], [8, 9], [2, 2]), "last position 2, got 2"),
        (([7], [t], [1], [8], [1]), r"stream codes in \[0, 2\)"),
        (([a], [3], [1], [8], [9]), r"type codes in \[0, 1\)"),
        (([a, a], [t], [1, 2], [8, 9], [6, 7]), "columns of one length"),
    ]
    for args, match in cases:
        with pytest.raises(ValidationError, match=match):
            log.restore_rows(*args)
    with pytest.raises(TypeError, match="Expected timestamps as a 1-D array of ints"):
        log.restore_rows([a], [t], [1.5], [8], [9])
    assert len(log) == 1 and log.last_seq == 5
    assert log.restore_rows([], [], [], [], []) == 0


def test_restore_rows_late_rows_keep_time_order(core: Any) -> None:
    log, a, b, t = _log(core)
    log.restore_rows(np.array([a, a, b]), np.array([t, t, t]), np.array([30, 10, 20]), np.array([1, 2, 3]), np.array([1, 2, 1]))
    assert log.window(None, None).ts.tolist() == [10, 20, 30]
    assert log.window(15, 31, [a]).seq.tolist() == [1]


def test_twins_agree(core_pair: Any) -> None:
    out = []
    for core in core_pair:
        log, a, b, t = _log(core)
        rng = np.random.default_rng(7)
        seq = np.cumsum(rng.integers(1, 4, 500))
        sc = rng.integers(0, 2, 500).astype(np.int32)
        pos = np.zeros(500, dtype=np.int64)
        for code in (0, 1):
            m = sc == code
            pos[m] = np.cumsum(rng.integers(1, 3, int(m.sum())))
        log.restore_rows(sc, np.zeros(500, np.int32), rng.integers(0, 1000, 500), seq, pos)
        log.evict_before(300)
        w = log.window(100, 900)
        out.append((w.ts.tolist(), w.seq.tolist(), w.pos.tolist(), log.stream_info(0), log.stream_info(1)))
    assert out[0] == out[1]


def test_restore_row_scalar_form(core: Any) -> None:
    log, a, b, t = _log(core)
    log.restore_row(a, t, 50, 3, 2)
    log.restore_row(b, t, 40, 7, 1)
    log.restore_row(a, t, 60, 9, 5)
    assert log.last_seq == 9 and len(log) == 3 and not log.is_sorted
    w = log.window(None, None)
    assert (w.ts.tolist(), w.seq.tolist(), w.pos.tolist()) == ([40, 50, 60], [7, 3, 9], [1, 2, 5])
    assert log.stream_info(a) == (2, 2, 5, 0)
    assert len(set(w.ids())) == 3  # derived ids stay unique
    with pytest.raises(ValidationError, match="Expected sequences increasing from 10, got"):
        log.restore_row(a, t, 1, 9, 6)
    with pytest.raises(ValidationError, match="last position 5, got 5"):
        log.restore_row(a, t, 1, 10, 5)
    with pytest.raises(ValidationError, match=r"Expected a type code in \[0, 1\), got 4"):
        log.restore_row(a, 4, 1, 10, 6)
    with pytest.raises(ValueError, match="Expected a stream code"):
        log.restore_row(9, t, 1, 10, 6)
    assert len(log) == 3 and log.last_seq == 9
    # mixed with restore_rows and ordinary appends
    log.restore_rows([b], [t], [70], [12], [4])
    assert log.append_columns(a, "t", [80]) == 6
    assert log.since_sequence(9).seq.tolist() == [12, 13]
