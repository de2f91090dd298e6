"""What every refused command must look like: exit 2 and one stderr line naming the problem, no traceback."""


def one_error_line(code, err, *words):
    """Exit 2 and one stderr line `qsnn-lava: error: ...` holding each of ``words``, no traceback."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qsnn-lava: error:"), err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], lines[0]
