"""Issue 11: the weaker messages made precise, each asserted with its located text."""

from __future__ import annotations

import pytest

from spec_helpers import archc, line_of, write_tree


@pytest.fixture
def tree(tmp_path):
    def run(files: dict, main: str = "s.yaml", *argv):
        write_tree(tmp_path, files)
        return archc("validate", *argv, main, cwd=tmp_path)
    return run


def at(text: str, needle: str, nth: int = 1) -> tuple:
    from spec_helpers import col_of

    return line_of(text, needle, nth), col_of(text, needle, nth)


def notes(r) -> list[dict]:
    return [d for d in r.diags if d["sev"] == "note"]


def test_parameter_typo_gets_did_you_mean_and_the_names_in_scope(tree):
    s = """\
archc: 1
name: t
input: 3x32x32
params: {pool_out: 8}
blocks:
  b:
    params: [width]
    seq: [conv 3x3 $width, conv 1x1 $pool_outs]
network:
  - {block: b, with: {width: 8}}
"""
    r = tree({"s.yaml": s})
    assert r.rc == 1
    e = r.only_error()
    assert (e["line"], e["col"]) == at(s, "conv 1x1 $pool_outs")
    assert e["msg"] == ("stage b: conv out: unknown parameter 'pool_outs'; did you mean "
                        "'pool_out'? (parameters in scope: classes, in, pool_out, width)")


def test_parameter_with_nothing_close_lists_the_scope_only(tree):
    s = "archc: 1\nname: t\ninput: 3x32x32\nnetwork:\n  - {name: c1, op: conv 3x3 $zzz}\n"
    e = tree({"s.yaml": s}).only_error()
    assert e["msg"] == ("stage c1: conv out: unknown parameter 'zzz' (parameters in scope: "
                        "classes)")


def test_residual_width_in_an_imported_block_names_the_users_with_line(tree):
    lib = """\
archc: 1
blocks:
  res:
    params: {channels: 16}
    residual:
      concat:
        - [conv 1x1 8]
        - [conv 1x1 8, conv 3x3 8]
      project: conv 1x1 $channels linear
"""
    s = """\
archc: 1
name: t
imports: [lib.yaml]
input: 16x17x17
network:
  - {block: res, name: stage_b, with: {channels: 15}}
"""
    r = tree({"s.yaml": s, "lib.yaml": lib})
    assert r.rc == 1
    e = r.only_error()
    assert (e["file"], e["line"]) == ("lib.yaml", line_of(lib, "project:"))
    assert "make the branch's last op (or its projection) output 16 channels" in e["msg"]
    ns = notes(r)
    assert [(n["file"], n["line"]) for n in ns][:2] == [("s.yaml", line_of(s, "{block: res")),
                                                     ("s.yaml", line_of(s, "{block: res"))]
    assert ns[1]["col"] == at(s, "with:")[1]
    assert ns[1]["msg"] == ("the block's widths come from these 'with:' values (channels): the "
                            "fix is usually here")


@pytest.mark.parametrize("text, where, message, note_at", [
    pytest.param("archc: 1\nname: t\nnetwork:\n    - {name: c1, op: conv 3x3 8}\n  head: [linear 10]\n",
                 (5, 3),
                 "inconsistent indentation: line 5 is indented 2 spaces, which lines up with none "
                 "of the lines it could belong to: line 4 (4 spaces) or line 3 (0 spaces); indent it "
                 "like the other keys (or list items) of its mapping (or list)", (4, 5), id="dedent"),
    pytest.param("archc: 1\nname: t\nblocks:\n  b:\n    params: [k]\n   seq: [conv 3x3 $k]\n",
                 (6, 4),
                 "inconsistent indentation: line 6 is indented 3 spaces, which lines up with none "
                 "of the lines it could belong to: line 5 (4 spaces) or line 4 (2 spaces) or line 3 "
                 "(0 spaces); indent it like the other keys (or list items) of its mapping (or list)",
                 (5, 5), id="between-levels"),
    pytest.param("archc: 1\nname: t\nnetwork:\n  - {name: c1, op: conv 3x3 8}\n  head: [linear 10]\n",
                 (5, 3),
                 "inconsistent indentation: line 5 is a mapping key at the same indentation "
                 "(2 spaces) as line 4, which is a list item ('- '); one level holds either keys or "
                 "list items: indent line 5 differently, or make both list items", (4, 3),
                 id="key-among-list-items"),
])
def test_yaml_indentation_in_plain_words(tree, text, where, message, note_at):
    r = tree({"s.yaml": text})
    assert r.rc == 1
    e = r.only_error()
    assert (e["line"], e["col"]) == where
    assert e["msg"] == message
    assert "<block" not in r.err and "expected <block end>" not in r.err
    assert [(n["line"], n["col"]) for n in notes(r)] == [note_at]


def test_error_in_an_anchor_names_every_alias_that_uses_it(tree):
    s = """\
archc: 1
name: t
input: 3x32x32
blocks:
  b:
    params: [k]
    seq: [conv 3x3 $k]
network:
  - {block: b, name: s1, with: &w {k: yes}}
  - {block: b, name: s2, with: *w}
  - {block: b, name: s3, with: *w}
"""
    r = tree({"s.yaml": s})
    assert r.rc == 1
    e = r.only_error()
    assert (e["line"], e["col"]) == at(s, "yes}")
    ns = notes(r)
    assert [(n["line"], n["col"]) for n in ns] == [at(s, "*w"), at(s, "*w", 2)]
    assert ns[0]["msg"] == (f"the value of anchor &w (line {line_of(s, '&w')}) is used here "
                            "through alias *w")


def test_anchor_error_found_after_parsing_also_names_the_aliases(tree):
    s = """\
archc: 1
name: t
input: 3x32x32
network:
  - name: a
    seq: &body
      - conv 3x3 8
      - conv 3x3 $nope
  - {name: b, seq: *body}
"""
    r = tree({"s.yaml": s})
    e = r.only_error()
    assert (e["line"], e["col"]) == at(s, "conv 3x3 $nope")
    assert [(n["line"], n["col"], n["msg"]) for n in notes(r)] == [
        (*at(s, "*body"), "the value of anchor &body (line 6) is used here through alias *body")]


def test_shipped_spec_as_archc_name_on_the_command_line(tmp_path):
    r = archc("validate", "archc:inception_v4", "archc:variants/inception_v4_half", cwd=tmp_path)
    assert r.rc == 0, r.err
    assert "inception_v4 ok" in r.out and "inception_v4_half ok" in r.out
    r = archc("validate", "archc:inception_v9", cwd=tmp_path)
    assert r.rc == 2
    assert r.err.strip() == ("archc: error: archc:inception_v9: no shipped spec named "
                             "'inception_v9' (see 'archc list')")


def test_archc_name_in_the_api():
    import archcompiler as ac

    assert ac.load_spec("archc:inception_v3").analysis.layers == 50
    with pytest.raises(ac.SpecError, match="no shipped spec named 'nope'"):
        ac.load_spec("archc:nope")


@pytest.mark.parametrize("argv", [
    ["--debug", "validate", "archc:inception_v3"],
    ["validate", "--debug", "archc:inception_v3"],
    ["validate", "archc:inception_v3", "--debug"],
])
def test_debug_is_accepted_anywhere(tmp_path, argv):
    r = archc(*argv, cwd=tmp_path)
    assert r.rc == 0, r.err
    assert "inception_v3 ok" in r.out


def test_debug_after_the_subcommand_shows_the_traceback(tmp_path, monkeypatch):
    from archcompiler import cli

    def boom(*a, **k):
        raise RuntimeError("planted")
    monkeypatch.setattr(cli, "format_table", boom)
    r = archc("validate", "archc:inception_v3", "--debug", cwd=tmp_path)
    assert r.rc == 3
    assert "Traceback" in r.err and "RuntimeError: planted" in r.err
    r = archc("validate", "archc:inception_v3", cwd=tmp_path)
    assert r.rc == 3 and "Traceback" not in r.err


def test_a_file_edited_between_two_loads_in_one_process_is_read_afresh(tmp_path):
    """Files shared by several specs are parsed once per process, keyed by their text:
    an edit of the same size and within the same clock tick is still seen."""
    good = "archc: 1\nname: t\ninput: 3x32x32\nnetwork:\n  - {name: c1, op: conv 3x3 8}\n"
    bad = good.replace("conv 3x3 8", "conv 3x3 x")
    assert len(bad) == len(good)
    write_tree(tmp_path, {"s.yaml": good})
    assert archc("validate", "s.yaml", cwd=tmp_path).rc == 0
    mtime = (tmp_path / "s.yaml").stat().st_mtime_ns
    (tmp_path / "s.yaml").write_text(bad)
    import os

    os.utime(tmp_path / "s.yaml", ns=(mtime, mtime))
    r = archc("validate", "s.yaml", cwd=tmp_path)
    assert r.rc == 1
    assert r.only_error()["line"] == 5
