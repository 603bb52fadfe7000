import pytest

from speechcls.atomic import atomic_write


def test_atomic_write_replaces_the_file_only_on_success(tmp_path):
    path = tmp_path / "sub" / "table.csv"
    with atomic_write(path) as temporary:
        temporary.write_text("complete")
        assert not path.exists() and temporary.parent == path.parent
    assert path.read_text() == "complete"
    with pytest.raises(RuntimeError, match="crash"), atomic_write(path) as temporary:
        temporary.write_text("half")
        raise RuntimeError("crash")
    assert path.read_text() == "complete"
    assert [p.name for p in path.parent.iterdir()] == ["table.csv"]
