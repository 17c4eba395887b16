"""Issue 5, spec-level part: hostile and broken specs. Every bad input gets exit code 1
(2 for usage errors) and a located `path:line:col: error: message`; nothing is executed
or constructed, nothing hangs, nothing grows without bound, never a traceback.

Most cases run `archc validate` in-process (fast); the hang and crash checks run it as a
subprocess with a timeout."""

from __future__ import annotations

import os
import re
import time

import pytest

from spec_helpers import MINIMAL, archc, archc_subprocess, col_of, write_tree

M = MINIMAL  # archc: 1 / name: t / input: 3x32x32 / network: [c1: conv 3x3 8]


def net(op: str, extra: str = "") -> str:
    """A minimal spec whose only stage is `op` (an op string or a flow mapping)."""
    return f"archc: 1\nname: t\ninput: 3x32x32\n{extra}network:\n  - {{name: c1, op: {op}}}\n"


def block_spec(block: str, stage: str = "{block: b}", extra: str = "") -> str:
    return (f"archc: 1\nname: t\ninput: 3x32x32\n{extra}blocks:\n  b: {block}\n"
            f"network:\n  - {stage}\n")


# (id, spec text or bytes, exit code, line, column, the message after "error: ")
CASES = [
    # --- YAML itself -----------------------------------------------------------------
    ("syntax-unclosed-flow", M + "head: [global_avgpool, linear 10\n", 1, 7, 1,
     "YAML syntax error: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence)"),
    ("syntax-colon-in-value", M + "title: Inception: v4\n", 1, 6, ": v4",
     "YAML syntax error: mapping values are not allowed here"),
    ("tab-indent", M.replace("  - {name", "\t- {name"), 1, 5, 1,
     "YAML syntax error: found character '\\t' that cannot start any token (while scanning for "
     "the next token); indent with spaces, YAML does not allow tabs there"),
    ("invalid-utf8", b"archc: 1\nname: t\xe9st\n", 1, 2, 8,
     "invalid UTF-8 byte 0xe9: spec files must be UTF-8 text"),
    ("utf16-file", "archc: 1\n".encode("utf-16"), 1, 1, 1,
     "invalid UTF-8 byte 0xff: spec files must be UTF-8 text"),
    ("nul-byte-binary", b"archc: 1\nname: t\n\x00\x01\x02PNG", 1, 3, 1,
     "NUL byte: this looks like a binary file, not YAML"),
    ("empty-file", "", 1, 1, 1, "the file holds no YAML document (it is empty, or comments only)"),
    ("comment-only", "# a spec\n# nothing else\n", 1, 1, 1,
     "the file holds no YAML document (it is empty, or comments only)"),
    ("multiple-documents", M + "---\narchc: 1\n", 1, 6, 1,
     "more than one YAML document ('---'): a spec file holds exactly one"),
    ("top-level-list", "- archc: 1\n- name: t\n", 1, 1, 1,
     "a spec file must be a YAML mapping (key: value), not a list of 2 items"),
    ("top-level-flow-list", "[1, 2]\n", 1, 1, 1,
     "a spec file must be a YAML mapping (key: value), not the list [1, 2]"),
    ("top-level-scalar", "inception_v4\n", 1, 1, 1,
     "a spec file must be a YAML mapping (key: value), not the string 'inception_v4'"),
    ("top-level-null", "~\n", 1, 1, 1,
     "a spec file must be a YAML mapping (key: value), not null (an empty value)"),
    ("deep-nesting", "archc: 1\nx: " + "[" * 100 + "]" * 100 + "\n", 1, 2, 67,
     "nesting deeper than 64 levels (a documented limit)"),
    ("duplicate-key", M + "name: u\n", 1, 6, 1, "duplicate key 'name' (first defined at line 2)"),
    ("duplicate-key-after-quoting", M + '"input": 3x64x64\n', 1, 6, 1,
     "duplicate key 'input' (first defined at line 3)"),
    ("key-read-as-bool", M + "true: 1\n", 1, 6, 1,
     "mapping key 'true' is read as a boolean, not a string: quote it ('true')"),
    ("key-read-as-int", M + "1: x\n", 1, 6, 1,
     "mapping key '1' is read as an integer, not a string: quote it ('1')"),
    ("key-not-scalar", M + "? [a, b]\n: 1\n", 1, 6, 3, "mapping keys must be plain strings"),
    # --- tags and code execution -------------------------------------------------------
    ("python-object-tag", M + "classes: !!python/object/apply:os.system ['exit 3']\n", 1, 6, 10,
     "YAML tag '!!python/object/apply:os.system' is not allowed: specs use plain YAML values "
     "only (remove the tag); nothing was constructed"),
    ("python-name-key", M + "!!python/name:os.system : 1\n", 1, 6, 1,
     "YAML tag '!!python/name:os.system' is not allowed: specs use plain YAML values only "
     "(remove the tag)"),
    ("custom-tag", M + "classes: !include other.yaml\n", 1, 6, 10,
     "YAML tag '!include' is not allowed: specs use plain YAML values only (remove the tag); "
     "nothing was constructed"),
    ("binary-tag", M + "classes: !!binary aGVsbG8=\n", 1, 6, 10,
     "YAML tag '!!binary' is not allowed: specs use plain YAML values only (remove the tag); "
     "nothing was constructed"),
    ("explicit-int-tag", M + "classes: !!int '10'\n", 1, 6, 10,
     "YAML tag '!!int' is not allowed: specs use plain YAML values only (remove the tag); "
     "nothing was constructed"),
    ("str-tag-is-a-string", M + "classes: !!str 64\n", 1, 6, 10,
     "classes: expected an integer, got the string '64' (numbers are written without quotes)"),
    ("merge-key", M + "defaults:\n  <<: {conv: {eps: 0.001}}\n", 1, 7, 3,
     "YAML merge keys ('<<') are not supported: use a block template with parameters, or 'extends'"),
    # --- aliases -----------------------------------------------------------------------
    ("recursive-alias", M + "head: &h [global_avgpool, *h]\n", 1, 6, 7,
     "recursive alias: a value contains itself"),
    # --- YAML 1.1 surprises --------------------------------------------------------------
    ("yaml11-yes", net("{op: conv, kernel: 3, out: 8, bias: yes}"), 1, 5, "yes}",
     "'yes' is a boolean in YAML 1.1 but a string in YAML 1.2: write true or false, or quote it "
     "if you mean the string"),
    ("yaml11-off", M + "aux:\n  - {name: a, after: c1, enabled: off, seq: [relu]}\n", 1, 7, "off,",
     "'off' is a boolean in YAML 1.1 but a string in YAML 1.2: write true or false, or quote it "
     "if you mean the string"),
    ("yaml11-leading-zero", M + "classes: 012\n", 1, 6, 10,
     "'012': a leading zero is octal in YAML 1.1 and decimal in YAML 1.2; write 12 (or 0o12 for octal)"),
    ("yaml11-sexagesimal", M + "classes: 1:30\n", 1, 6, 10,
     "'1:30' is a base-60 number in YAML 1.1 and a string in YAML 1.2: quote it if you mean the string"),
    ("yaml11-underscore-int", M + "classes: 1_000\n", 1, 6, 10,
     "'1_000' is an integer in YAML 1.1 but a string in YAML 1.2: write 1000, or quote it if you "
     "mean the string"),
    ("yaml11-binary-int", M + "classes: 0b11\n", 1, 6, 10,
     "'0b11' is an integer in YAML 1.1 but a string in YAML 1.2: write 3, or quote it if you "
     "mean the string"),
    ("date-is-a-string", M + "classes: 2017-02-23\n", 1, 6, 10,
     "classes: expected an integer, got the string '2017-02-23'"),
    ("nan", M + "classes: .nan\n", 1, 6, 10, "'.nan': NaN and infinity are not allowed"),
    ("inf", M + "width: -.inf\n", 1, 6, 8, "'-.inf': NaN and infinity are not allowed"),
    ("float-overflow", M + "width: 1e999\n", 1, 6, 8, "'1e999' is not a finite number"),
    ("huge-int", M + "classes: 18446744073709551616\n", 1, 6, 10,
     "integer 18446744073709551616 is too large (limit 2**53)"),
    ("thousands-of-digits", M + "classes: " + "9" * 5000 + "\n", 1, 6, 10,
     "integer 9999999999999999999999999999999999999... is too large (limit 2**53)"),
    # --- schema --------------------------------------------------------------------------
    ("unknown-field", M + "clases: 10\n", 1, 6, 1, "unknown field 'clases'; did you mean 'classes'?"),
    ("unknown-op-string", net("convolution 3x3 8"), 1, 5, 20,
     "network[0].op: unknown op 'convolution' (valid ops: conv, batchnorm, layernorm, groupnorm, relu, relu6, leaky_relu, silu, gelu, gelu_tanh, sigmoid, hardsigmoid, hardswish, tanh, identity, maxpool, avgpool, adaptive_avgpool, adaptive_maxpool, global_avgpool, global_maxpool, flatten, linear, dropout, layer_scale, drop_path)"),
    ("unknown-op-mapping", net("{op: instancenorm}"), 1, 5, "op: {",
     "network[0].op: unknown op 'instancenorm' (valid ops: conv, batchnorm, layernorm, groupnorm, relu, relu6, leaky_relu, silu, gelu, gelu_tanh, sigmoid, hardsigmoid, hardswish, tanh, identity, maxpool, avgpool, adaptive_avgpool, adaptive_maxpool, global_avgpool, global_maxpool, flatten, linear, dropout, layer_scale, drop_path)"),
    ("unknown-block", block_spec("{seq: [relu]}", "{block: inception_q}"), 1, 7, 6,
     "stage inception_q: unknown block 'inception_q' (defined blocks: b)"),
    ("unsupported-version", M.replace("archc: 1", "archc: 2"), 1, 1, 1,
     "archc: unsupported spec version 2: this archc reads version 1"),
    ("version-as-string", M.replace("archc: 1", "archc: '1'"), 1, 1, 8,
     "archc: expected an integer, got the string '1' (numbers are written without quotes)"),
    ("missing-version", M.replace("archc: 1\n", ""), 1, 1, 1, "missing required field 'archc'"),
    ("bad-name", M.replace("name: t", "name: 3d-net"), 1, 2, 7,
     "name: '3d-net' is not a valid name (letters, digits and '_', not starting with a digit, "
     "at most 64 characters)"),
    ("bad-shape", M.replace("3x32x32", "3 x 32 x 32"), 1, 3, 8,
     "input: expected a shape written CxHxW like 384x35x35, got '3 x 32 x 32'"),
    ("op-string-flag-conflict", net("conv 3x3 8 same valid"), 1, 5, 20,
     "network[0].op: 'conv 3x3 8 same valid': 'valid' conflicts with 'same' (say it once)"),
    # --- graph semantics -------------------------------------------------------------------
    ("self-reference", block_spec("{seq: [conv 1x1 4, {block: b}]}"), 1, 5, "block: b}",
     "stage b: block cycle: b -> b (a block cannot contain itself)"),
    ("undefined-param", net("conv 3x3 $width"), 1, 5, 20, "stage c1: conv out: unknown parameter 'width' (parameters in scope: classes)"),
    ("duplicate-stage", M + "  - {name: c1, op: relu}\n", 1, 6, 5,
     "stage c1: duplicate stage name 'c1' (first at line 5): give it a 'name'"),
    ("zero-kernel", net("conv 0x3 8"), 1, 5, 20,
     "stage c1: conv: kernel sizes must be between 1 and 64, got 0x3"),
    ("negative-kernel", net("{op: maxpool, kernel: -3}"), 1, 5, 20,
     "stage c1: maxpool: kernel sizes must be between 1 and 64, got -3x-3"),
    ("zero-stride", net("conv 3x3/0 8 valid"), 1, 5, 20,
     "stage c1: conv: stride must be between 1 and 64, got 0x0"),
    ("zero-channels", net("conv 3x3 0"), 1, 5, 20, "stage c1: conv out must be >= 1, got 0"),
    ("negative-channels-expr", net("conv 3x3 $(2 - 10)"), 1, 5, 20,
     "stage c1: conv out must be >= 1, got -8"),
    ("zero-repeat", block_spec("{seq: [relu]}", "{block: b, repeat: 0}"), 1, 7, 16,
     "stage b: repeat must be >= 1, got 0"),
    ("negative-repeat", block_spec("{seq: [relu]}", "{block: b, repeat: -2}"), 1, 7, 16,
     "stage b: repeat must be >= 1, got -2"),
    ("divide-by-zero", net("conv 3x3 $(k // (k - k))", "params: {k: 8}\n"), 1, 6, 20,
     "stage c1: conv out: division by zero in '$(k // (k - k))'"),
    ("exploding-expression", net("conv 3x3 $(k*k*k*k*k)", "params: {k: 10000}\n"), 1, 6, 20,
     "stage c1: conv out: value 10000000000000000 is out of range (|x| <= 1000000000000)"),
    ("expression-too-deep", net("conv 3x3 $(" + "(" * 40 + "1" + ")" * 40 + ")"), 1, 5, 20,
     "network[0].op: '$(" + "(" * 40 + "1" + ")" * 40 + ")': nested too deeply"),
    ("dropout-p-1", net("{op: dropout, p: 1.0}"), 1, 5, 20, "stage c1: dropout p must be < 1, got 1.0"),
    ("same-padding-strided", net("conv 3x3/2 8 same"), 1, 5, 20,
     "stage c1: conv: padding 'same' is defined for stride 1 only; write valid, an explicit "
     "pad=P or (convs) tf_same for a strided op"),
    # --- resource limits -------------------------------------------------------------------
    ("repeat-limit", block_spec("{seq: [relu]}", "{block: b, repeat: 1001}"), 1, 7, 16,
     "stage b: repeat must be <= 1000, got 1001 (a documented limit)"),
    ("channel-limit", net("conv 3x3 65537"), 1, 5, 20,
     "stage c1: conv out must be <= 65536, got 65537 (a documented limit)"),
    ("kernel-limit", net("conv 65x65 8"), 1, 5, 20,
     "stage c1: conv: kernel sizes must be between 1 and 64, got 65x65"),
    ("input-size-limit", M.replace("3x32x32", "3x5000x5000"), 1, 3, 1,
     "input 3x5000x5000 is larger than the limit 4096"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_spec(tmp_path, case):
    _, content, rc, line, col, message = case
    if isinstance(col, str):  # the column where this text starts on the line
        text = content.decode() if isinstance(content, bytes) else content
        col = text.splitlines()[line - 1].index(col) + 1
    write_tree(tmp_path, {"s.yaml": content})
    r = archc("validate", "s.yaml", cwd=tmp_path)
    assert r.rc == rc, r.err
    first = r.err.splitlines()[0]
    assert first == f"s.yaml:{line}:{col}: error: {message}"
    assert "Traceback" not in r.err + r.out


def test_at_least_fifty_cases():
    assert len(CASES) >= 50


def test_nothing_constructed_from_python_tags(tmp_path):
    marker = tmp_path / "pwned"
    spec = M + f"classes: !!python/object/apply:os.system ['touch {marker}']\n"
    spec += f"title: !!python/object/new:pathlib.Path ['{marker}']\n"
    write_tree(tmp_path, {"s.yaml": spec})
    r = archc_subprocess("validate", "s.yaml", cwd=tmp_path)
    assert r.rc == 1
    assert not marker.exists()
    assert [e["line"] for e in r.errors] == [6, 7]


def test_billion_laughs_rejected_quickly(tmp_path):
    lines = ["archc: 1", "a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 10) + "]")
    write_tree(tmp_path, {"s.yaml": "\n".join(lines) + "\n"})
    t0 = time.perf_counter()
    r = archc("validate", "s.yaml", cwd=tmp_path)
    elapsed = time.perf_counter() - t0
    assert r.rc == 1
    e = r.only_error()
    assert e["msg"] == ("the document expands to more than 50000 values (alias/anchor expansion?); "
                        "specs are small, write them out")
    assert elapsed < 10  # 10**10 values if expanded; the budget stops it at 50,000


def test_moderate_alias_use_is_fine(tmp_path):
    spec = ("archc: 1\nname: t\ninput: 3x32x32\nparams: {k: &k 8}\n"
            "blocks:\n  b: {params: [c], seq: [conv 3x3 $c]}\n"
            "network:\n  - {block: b, name: b1, with: {c: *k}}\n  - {block: b, name: b2, with: {c: *k}}\n")
    write_tree(tmp_path, {"s.yaml": spec})
    r = archc("validate", "s.yaml", cwd=tmp_path)
    assert r.rc == 0, r.err


def test_yaml12_float_without_dot(tmp_path):
    # PyYAML (YAML 1.1) reads 1e-3 as a string; specs read it as the number 0.001
    import archcompiler

    write_tree(tmp_path, {"s.yaml": net("{op: dropout, p: 1e-3}")})
    spec = archcompiler.load_spec(str(tmp_path / "s.yaml"))
    (drop,) = [n for n in spec.analysis.graph.nodes if n.op == "dropout"]
    assert drop.attrs["p"] == 0.001


def test_utf8_bom_is_accepted(tmp_path):
    write_tree(tmp_path, {"s.yaml": b"\xef\xbb\xbf" + M.encode()})
    assert archc("validate", "s.yaml", cwd=tmp_path).rc == 0


def test_very_large_file(tmp_path):
    big = M + "description: " + "x" * (1 << 20) + "\n"
    write_tree(tmp_path, {"s.yaml": big})
    r = archc("validate", "s.yaml", cwd=tmp_path)
    assert r.rc == 1
    e = r.only_error()
    assert (e["line"], e["col"]) == (1, 1)
    assert e["msg"] == f"file is {len(big)} bytes; spec files are limited to 1048576 bytes"


def test_too_many_yaml_values_rejected_quickly(tmp_path):
    spec = M + "description: [" + ", ".join(["1"] * 60_000) + "]\n"
    write_tree(tmp_path, {"s.yaml": spec})
    t0 = time.perf_counter()
    r = archc("validate", "s.yaml", cwd=tmp_path)
    assert r.rc == 1
    e = r.only_error()
    assert e["line"] == 6
    assert e["msg"].startswith("document too large: more than 50000 YAML values and collections")
    assert time.perf_counter() - t0 < 20


def test_trillion_parameter_spec_fails_quickly(tmp_path):
    spec = block_spec("{seq: [conv 3x3 65536, conv 3x3 65536]}", "{block: b, repeat: 1000}")
    write_tree(tmp_path, {"s.yaml": spec})
    t0 = time.perf_counter()
    r = archc("validate", "s.yaml", cwd=tmp_path)
    elapsed = time.perf_counter() - t0
    assert r.rc == 1
    e = r.only_error()
    assert (e["line"], e["col"]) == (5, col_of(spec, "conv 3x3 65536]"))
    m = re.match(r"stage b: the network would have about ([\d,]+) parameters, over the limit of "
                 r"2,000,000,000 \(a documented limit\); the largest op, b\.0\.1\.conv, alone has "
                 r"([\d,]+)$", e["msg"])
    assert m, e["msg"]
    # 2000 convs of 65536 x 65536 x 3 x 3: about 7.7e13 (a trillion is 1e12)
    assert int(m.group(1).replace(",", "")) > 7e13
    assert int(m.group(2).replace(",", "")) >= 65536 * 65536 * 9
    assert elapsed < 10  # milliseconds in practice: nothing is allocated


def test_node_limit_on_nested_repeats(tmp_path):
    blocks = "\n".join(
        f"  b{i}: {{seq: [" + ", ".join([f"{{block: b{i - 1}}}"] * 10) + "]}" for i in range(1, 5))
    spec = (f"archc: 1\nname: t\ninput: 3x32x32\nblocks:\n  b0: {{seq: [conv 1x1 4]}}\n{blocks}\n"
            "network:\n  - {block: b4, repeat: 100}\n")
    write_tree(tmp_path, {"s.yaml": spec})
    t0 = time.perf_counter()
    r = archc("validate", "s.yaml", cwd=tmp_path)
    assert r.rc == 1
    assert "the network has more than 100000 ops (a documented limit)" in r.only_error()["msg"]
    assert time.perf_counter() - t0 < 30


# --- files ---------------------------------------------------------------------------------

def test_import_escaping_the_root_with_dotdot(tmp_path):
    root = tmp_path / "specs"
    (tmp_path / "secret.yaml").write_text("archc: 1\nblocks:\n  b: {seq: [relu]}\n")
    write_tree(root, {"s.yaml": net("relu", "imports: [../secret.yaml]\n")})
    r = archc("validate", "s.yaml", cwd=root)
    e = r.only_error()
    assert r.rc == 1 and (e["line"], e["col"]) == (4, 11)
    assert e["msg"] == (f"imports[0]: '../secret.yaml' resolves to {tmp_path.resolve()}/secret.yaml, "
                        f"outside the spec root {root.resolve()} (the nearest directory holding "
                        ".archc-root, .git or pyproject.toml, else the spec's own directory): put a "
                        ".archc-root file in a directory above both files, or give --root")


def test_import_with_absolute_path(tmp_path):
    write_tree(tmp_path, {"s.yaml": net("relu", "imports:\n  - /etc/passwd\n")})
    r = archc("validate", "s.yaml", cwd=tmp_path)
    e = r.only_error()
    assert r.rc == 1 and (e["line"], e["col"]) == (5, 5)
    assert e["msg"] == ("imports[0]: '/etc/passwd': absolute paths are not allowed; write a path "
                        "relative to this file, inside the spec root")


def test_extends_with_home_path(tmp_path):
    write_tree(tmp_path, {"s.yaml": "archc: 1\nextends: ~/base.yaml\n"})
    e = archc("validate", "s.yaml", cwd=tmp_path).only_error()
    assert (e["line"], e["col"]) == (2, 10)
    assert e["msg"].startswith("extends: '~/base.yaml': absolute paths are not allowed")


def test_symlink_out_of_the_root_refused(tmp_path):
    root = tmp_path / "specs"
    outside = tmp_path / "outside.yaml"
    outside.write_text("archc: 1\nblocks:\n  b: {seq: [relu]}\n")
    write_tree(root, {"s.yaml": block_spec("{seq: [relu]}", extra="imports: [lib.yaml]\n")})
    (root / "lib.yaml").symlink_to(outside)
    r = archc("validate", "s.yaml", cwd=root)
    e = r.only_error()
    assert r.rc == 1 and (e["line"], e["col"]) == (4, 11)
    assert e["msg"] == (f"imports[0]: 'lib.yaml' resolves to {outside.resolve()}, outside the spec "
                        f"root {root.resolve()} (the nearest directory holding .archc-root, .git or "
                        "pyproject.toml, else the spec's own directory): put a .archc-root file in a "
                        "directory above both files, or give --root")


def test_symlink_inside_the_root_is_fine(tmp_path):
    lib = "archc: 1\nblocks:\n  c: {seq: [relu]}\n"
    write_tree(tmp_path, {"real/lib.yaml": lib,
                          "s.yaml": block_spec("{seq: [{block: c}]}", extra="imports: [lib.yaml]\n")})
    (tmp_path / "lib.yaml").symlink_to(tmp_path / "real" / "lib.yaml")
    assert archc("validate", "s.yaml", cwd=tmp_path).rc == 0


def test_include_cycle_and_diamond(tmp_path):
    cyc = {"s.yaml": net("relu", "imports: [a.yaml]\n"), "a.yaml": "archc: 1\nimports: [a.yaml]\n"}
    write_tree(tmp_path / "cycle", cyc)
    e = archc("validate", "s.yaml", cwd=tmp_path / "cycle").only_error()
    assert (e["file"], e["line"], e["col"]) == ("a.yaml", 2, 11)
    assert e["msg"] == "imports[0]: import cycle: a.yaml -> a.yaml"
    dia = {"s.yaml": block_spec("{seq: [{block: x}]}", extra="imports: [l.yaml, r.yaml]\n"),
           "l.yaml": "archc: 1\nimports: [d.yaml]\n", "r.yaml": "archc: 1\nimports: [d.yaml]\n",
           "d.yaml": "archc: 1\nblocks:\n  x: {seq: [conv 1x1 4]}\n"}
    write_tree(tmp_path / "diamond", dia)
    assert archc("validate", "s.yaml", cwd=tmp_path / "diamond").rc == 0


def test_missing_import(tmp_path):
    write_tree(tmp_path, {"s.yaml": net("relu", "imports: [nope.yaml]\n")})
    e = archc("validate", "s.yaml", cwd=tmp_path).only_error()
    assert (e["file"], e["line"], e["col"]) == ("s.yaml", 4, 11)
    assert e["msg"] == "imports[0]: 'nope.yaml': no such file"


def test_binary_import(tmp_path):
    write_tree(tmp_path, {"s.yaml": net("relu", "imports: [logo.yaml]\n"),
                          "logo.yaml": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"})
    r = archc("validate", "s.yaml", cwd=tmp_path)
    e = r.only_error()
    assert (e["file"], e["line"], e["col"]) == ("logo.yaml", 1, 1)
    assert e["msg"] == "invalid UTF-8 byte 0x89: spec files must be UTF-8 text"
    assert "s.yaml:4:11: note: included from here" in r.err


def test_directory_import(tmp_path):
    write_tree(tmp_path, {"s.yaml": net("relu", "imports: [blocks]\n"), "blocks/x.yaml": "archc: 1\n"})
    e = archc("validate", "s.yaml", cwd=tmp_path).only_error()
    assert e["msg"] == "imports[0]: 'blocks': is a directory, not a spec file"


def test_unknown_shipped_reference(tmp_path):
    write_tree(tmp_path, {"s.yaml": "archc: 1\nextends: archc:inception_v5\n"})
    e = archc("validate", "s.yaml", cwd=tmp_path).only_error()
    assert (e["line"], e["col"]) == (2, 10)
    assert e["msg"].startswith("extends: no shipped spec named 'archc:inception_v5' (shipped: "
                               "bn_inception, convnext_tiny, densenet121, efficientnet_b0, googlenet,")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_import_does_not_hang(tmp_path):
    write_tree(tmp_path, {"s.yaml": net("relu", "imports: [pipe.yaml]\n")})
    os.mkfifo(tmp_path / "pipe.yaml")
    r = archc_subprocess("validate", "s.yaml", cwd=tmp_path, timeout=60)
    assert r.rc == 1
    e = r.only_error()
    assert (e["file"], e["line"], e["col"]) == ("s.yaml", 4, 11)
    assert e["msg"] == "imports[0]: 'pipe.yaml': not a regular file (a device, FIFO or socket): refused"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_and_dev_zero_on_the_command_line_do_not_hang(tmp_path):
    os.mkfifo(tmp_path / "pipe.yaml")
    r = archc_subprocess("validate", "pipe.yaml", cwd=tmp_path, timeout=60)
    assert r.rc == 2
    assert r.err.strip() == "archc: error: pipe.yaml: not a regular file (a device, FIFO or socket): refused"
    if os.path.exists("/dev/zero"):
        r = archc_subprocess("validate", "/dev/zero", cwd=tmp_path, timeout=60)
        assert r.rc == 2
        assert "/dev/zero: not a regular file" in r.err


def test_dev_zero_through_a_symlink_inside_the_root(tmp_path):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    root = write_tree(tmp_path, {"s.yaml": net("relu", "imports: [zero.yaml]\n")})
    (root / "zero.yaml").symlink_to("/dev/zero")
    r = archc_subprocess("validate", "s.yaml", cwd=root, timeout=60)
    assert r.rc == 1
    assert "resolves to /dev/zero, outside the spec root" in r.only_error()["msg"]


# --- the command line ---------------------------------------------------------------------

def test_usage_errors_exit_2(tmp_path):
    r = archc("validate", tmp_path / "missing.yaml")
    assert r.rc == 2
    assert r.err.strip() == (f"archc: error: {tmp_path}/missing.yaml: no such file, and no shipped "
                             "spec of that name (see 'archc list')")
    r = archc("validate", tmp_path)
    assert r.rc == 2 and "is a directory" in r.err
    r = archc("validate", "--no-such-option", "inception_v4")
    assert r.rc == 2 and "unrecognized arguments: --no-such-option" in r.err
    r = archc("validate")
    assert r.rc == 2 and "the following arguments are required: SPEC" in r.err
    r = archc("validate", "--input-size", "5000", "inception_v4")
    assert r.rc == 2 and "sizes in 1..4096" in r.err
    r = archc("validate", "--error-format", "xml", "inception_v4")
    assert r.rc == 2
    r = archc()
    assert r.rc == 2
    r = archc("schema", "-o", tmp_path / "no" / "such" / "dir.json")
    assert r.rc == 2 and "cannot write" in r.err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads anything")
def test_unreadable_file_is_a_usage_error(tmp_path):
    write_tree(tmp_path, {"s.yaml": M})
    os.chmod(tmp_path / "s.yaml", 0)
    r = archc("validate", "s.yaml", cwd=tmp_path)
    assert r.rc == 2 and "permission denied" in r.err


def test_one_bad_spec_among_good_ones(tmp_path):
    write_tree(tmp_path, {"good.yaml": M, "bad.yaml": M.replace("conv 3x3 8", "conv 3x3 0")})
    r = archc("validate", "good.yaml", "bad.yaml", "good.yaml", cwd=tmp_path)
    assert r.rc == 1
    assert r.out.count("good.yaml: t ok") == 2
    assert "bad.yaml: invalid (1 error)" in r.out
    col = col_of(M, "conv 3x3 8")
    assert r.err.splitlines() == [f"bad.yaml:5:{col}: error: stage c1: conv out must be >= 1, got 0"]


def test_github_annotations(tmp_path):
    write_tree(tmp_path, {"s.yaml": M + "clases: 10\nwidth: yes\n"})
    r = archc("validate", "--error-format", "github", "s.yaml", cwd=tmp_path)
    assert r.rc == 1
    assert r.err.splitlines() == [
        "::error file=s.yaml,line=7,col=8::'yes' is a boolean in YAML 1.1 but a string in YAML 1.2: "
        "write true or false, or quote it if you mean the string",
    ]
    write_tree(tmp_path, {"s.yaml": M + "clases: 10\n"})
    r = archc("validate", "--error-format", "github", "s.yaml", cwd=tmp_path)
    assert r.err.splitlines() == [
        "::error file=s.yaml,line=6,col=1::unknown field 'clases'; did you mean 'classes'?"]


def test_github_annotation_escapes(tmp_path):
    from archcompiler.errors import Diagnostic, Location

    d = Diagnostic(Location("a,b:c.yaml", 3, 4), "100% wrong\nreally")
    assert d.format_github() == "::error file=a%2Cb%3Ac.yaml,line=3,col=4::100%25 wrong%0Areally"


def test_no_traceback_for_any_hostile_case_in_a_subprocess(tmp_path):
    """All table cases at once, as one real `archc` process: exit 1, no traceback."""
    names = []
    for i, (_, content, rc, *_rest) in enumerate(CASES):
        name = f"case{i:02d}.yaml"
        write_tree(tmp_path, {name: content})
        names.append(name)
    r = archc_subprocess("validate", *names, cwd=tmp_path, timeout=120)
    assert r.rc == 1
    assert "Traceback" not in r.err and "internal error" not in r.err
    files_with_errors = {d["file"] for d in r.errors}
    assert files_with_errors == set(names)
    # errors of each file come in line order
    for name in names:
        lines = [d["line"] for d in r.errors if d["file"] == name]
        assert lines == sorted(lines)


def test_errors_in_line_order_and_all_reported(tmp_path):
    spec = ("archc: 1\nname: t\ninput: 3x32x32\nnetwork:\n"
            "  - {name: a, op: {op: conv, kernel: 3, out: 8, strde: 1}}\n"
            "  - {name: b, op: {op: conv, kernel: 3, out: true}}\n"
            "  - {name: c, op: convv 3x3 8}\n"
            "clases: 5\n")
    write_tree(tmp_path, {"s.yaml": spec})
    r = archc("validate", "s.yaml", cwd=tmp_path)
    assert r.rc == 1
    assert [(d["line"], d["col"]) for d in r.errors] == [
        (5, col_of(spec, "strde")), (6, col_of(spec, "out: true")), (7, col_of(spec, "convv")),
        (8, 1)]
    assert re.match(r"network\[0\]\.op: unknown field 'strde'", r.errors[0]["msg"])
    assert r.errors[1]["msg"].startswith("network[1].op.out: expected an integer")
    assert r.errors[2]["msg"].startswith("network[2].op: unknown op 'convv'")
    assert r.errors[3]["msg"] == "unknown field 'clases'; did you mean 'classes'?"


def test_same_block_name_from_two_imports(tmp_path):
    lib = "archc: 1\nblocks:\n  x: {seq: [relu]}\n"
    spec = "archc: 1\nname: t\ninput: 3x32x32\nimports: [a.yaml, b.yaml]\nnetwork:\n  - {block: x}\n"
    write_tree(tmp_path, {"s.yaml": spec, "a.yaml": lib, "b.yaml": lib})
    e = archc("validate", "s.yaml", cwd=tmp_path).only_error()
    assert (e["line"], e["col"]) == (4, col_of(spec, "b.yaml"))
    assert e["msg"] == "block 'x' is defined both in a.yaml and in b.yaml"


@pytest.mark.parametrize("kind", ["imports", "extends"])
def test_include_depth_limit(tmp_path, kind):
    files = {}
    for i in range(20):
        ref = f"f{i + 1}.yaml"
        files[f"f{i}.yaml"] = f"archc: 1\n{kind}: {'[' + ref + ']' if kind == 'imports' else ref}\n"
    if kind == "imports":
        files["f20.yaml"] = "archc: 1\nblocks:\n  x: {seq: [relu]}\n"
        files["s.yaml"] = "archc: 1\nname: t\nimports: [f0.yaml]\nnetwork:\n  - {block: x}\n"
    else:
        files["f20.yaml"] = "archc: 1\nname: base\nnetwork:\n  - {name: c, op: relu}\n"
        files["s.yaml"] = "archc: 1\nextends: f0.yaml\n"
    write_tree(tmp_path, files)
    r = archc("validate", "s.yaml", cwd=tmp_path)
    assert r.rc == 1
    e = r.only_error()
    assert e["file"] == "f15.yaml" and e["line"] == 2
    assert e["msg"] == f"{kind} nested deeper than 16 files (a documented limit)"
    notes = [d for d in r.diags if d["sev"] == "note"]
    assert [n["file"] for n in notes] == [f"f{i}.yaml" for i in range(14, -1, -1)] + ["s.yaml"]


def test_symlink_loop(tmp_path):
    write_tree(tmp_path, {"s.yaml": net("relu", "imports: [a.yaml]\n")})
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    r = archc_subprocess("validate", "s.yaml", cwd=tmp_path, timeout=60)
    assert r.rc == 1
    e = r.only_error()
    assert (e["file"], e["line"], e["col"]) == ("s.yaml", 4, 11)
    assert e["msg"].startswith("imports[0]: 'a.yaml': cannot read: ")
