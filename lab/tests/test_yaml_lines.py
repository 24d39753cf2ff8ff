"""Line-aware YAML loading: every error names file, line and field."""

import pytest

from paylab.lab.yaml_lines import LocatedError, field_name, load_file_with_lines, load_with_lines

DOC = """\
rigs:
  bench-1:
    readers:
      - name: contact
        pattern: "ACS*"
      - name: cl
        pattern: 12
"""


def test_values_and_lines():
    value, lines = load_with_lines(DOC, "inv.yaml")
    assert value["rigs"]["bench-1"]["readers"][1]["pattern"] == 12
    assert lines.line(("rigs", "bench-1", "readers", 1, "pattern")) == 7
    assert lines.line(("rigs", "bench-1", "readers", 0)) == 4
    assert lines.line(("rigs", "bench-1", "readers", 1, "missing")) == 6  # nearest ancestor: readers[1]
    err = lines.error(("rigs", "bench-1", "readers", 1, "pattern"), "must be a string")
    assert str(err) == "inv.yaml:7: rigs.bench-1.readers[1].pattern: must be a string"


def test_field_name():
    assert field_name(()) == "(document)"
    assert field_name(("a", 0, "b")) == "a[0].b"


def test_duplicate_key_refused():
    with pytest.raises(LocatedError, match=r"x.yaml:3: a.b: duplicate key"):
        load_with_lines("a:\n  b: 1\n  b: 2\n", "x.yaml")


def test_syntax_error_names_line():
    with pytest.raises(LocatedError, match=r"x.yaml:2: \(document\): not valid YAML"):
        load_with_lines("a: [1,\nb: }\n", "x.yaml")


def test_empty_and_unreadable(tmp_path):
    assert load_with_lines("", "e.yaml")[0] is None
    with pytest.raises(LocatedError, match="cannot read"):
        load_file_with_lines(tmp_path / "nope.yaml")


def test_subclass_error_type():
    class CampaignError(LocatedError):
        pass

    with pytest.raises(CampaignError):
        load_with_lines("a: 1\na: 2\n", "c.yaml", CampaignError)
