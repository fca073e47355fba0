"""Hostile configuration and symbols (Step 7b): every door into the settings — a manifest file, a `--set` value, a
`TVS_*` variable, explicit overrides — and `Symbol.parse` refuse hostile input with a typed error naming it, within
bounded memory, never a hang, a traceback or a silent remap. The visible specification is in nbs/02_config.ipynb and
nbs/00_core.ipynb; this is the heavier battery."""
import os
import signal
import sys
import tracemalloc
import unicodedata

import pydantic
import pytest

from tradingview_scraper.config import (MAX_DEPTH, MAX_NODES, MAX_TEXT_BYTES, MAX_VALUE_BYTES, check_tree, load_manifest,
                                        parse_setting, safe_yaml)
from tradingview_scraper.core import ConfigError, Symbol, ValidationError, describe, encode_symbol
from tradingview_scraper.profile import Profile, load_profile
from tradingview_scraper.security import safe_component

HANG_GUARD_S = 120   # turns a hang (the bug) into a failure; a passing test never comes near it


@pytest.fixture(autouse=True)
def hang_guard():
    def _hung(*_): raise TimeoutError(f"hung for {HANG_GUARD_S} s")
    old = signal.signal(signal.SIGALRM, _hung)
    signal.alarm(HANG_GUARD_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def laughs(levels=10, width=9, flow=False):
    "The billion laughs: each level repeats the one below `width` times."
    rows = [f"&a0 [{', '.join(['lol'] * width)}]"] + [f"&a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "[" + ", ".join(rows) + "]" if flow else "".join(f"a{i}: {r}\n" for i, r in enumerate(rows))


def merge_bomb(levels=12, width=9):
    "Merge keys (`<<`) copy whole mappings into another: the same bomb through the constructor's flattening."
    rows = ["m0: &m0 {" + ", ".join(f"k{j}: {j}" for j in range(width)) + "}"]
    rows += [f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * width)}], x{i}: 1}}" for i in range(1, levels)]
    return "\n".join(rows) + "\n"


# YAML values that must be refused wherever they come from, with a word the message must contain
HOSTILE_VALUES = {
    "laughs": (laughs(), "counting each alias as what it repeats"),
    "laughs_flow": (laughs(flow=True), "counting each alias as what it repeats"),
    "merge_bomb": (merge_bomb(), "counting each alias as what it repeats"),
    "recursive_alias": ("&a [1, *a]", "names no finished anchor"),
    "undefined_alias": ("[*nope]", "names no finished anchor"),
    "deep_flow_40": ("[" * 40 + "]" * 40, "nested deeper than 32 levels"),
    "deep_flow_5000": ("[" * 5000 + "]" * 5000, "invalid"),
    "deep_map_40": ("{a: " * 40 + "1" + "}" * 40, "nested deeper than 32 levels"),
    "deep_block_40": ("- " * 40 + "x", "nested deeper than 32 levels"),
    "python_apply": ("!!python/object/apply:os.system ['echo pwned']", "could not determine a constructor"),
    "python_name": ("!!python/name:os.system", "could not determine a constructor"),
    "python_new": ("!!python/object/new:subprocess.Popen [[true]]", "could not determine a constructor"),
    "python_module": ("!!python/module:os", "could not determine a constructor"),
    "custom_tag": ("!evil {a: 1}", "could not determine a constructor"),
    "binary": ("!!binary aGVsbG8=", "'binary' value"),
    "set": ("!!set {a, b}", "'set' value"),
    "omap": ("!!omap [{a: 1}]", "'omap' value"),
    "pairs": ("!!pairs [{a: 1}]", "'pairs' value"),
    "long_int": ("1" * 5000, "integer of 5000 characters"),
    "long_hex": ("0x" + "f" * 200, "integer of 202 characters"),
    "inf": (".inf", "not finite"),
    "minus_inf": ("[-.inf]", "not finite"),
    "nan": ("{a: .NaN}", "not finite"),
    "overflow": ("1.0e+999", "not finite"),
    "int_key": ("{1: a}", "not a string: 1"),
    "bool_key": ("{yes: a}", "not a string: True"),
    "null_key": ("{~: a}", "not a string: None"),
    "list_key": ("{[a]: b}", "invalid"),
    "nul": ("a\x00b", "not valid YAML/JSON"),
    "escape": ("a\x1b[31mred", "not valid YAML/JSON"),
    "unclosed": ("[1", "not valid YAML/JSON"),
    "two_documents": ("a\n--- b", "not valid YAML/JSON"),
}


def _check_message(e, *parts):
    msg = str(e.value)
    assert len(msg) < 1000 and "\x00" not in msg, msg
    for p in parts: assert p in msg, (p, msg)


@pytest.mark.parametrize("name", HOSTILE_VALUES)
def test_hostile_set_value(name):
    text, word = HOSTILE_VALUES[name]
    with pytest.raises(ConfigError) as e: parse_setting(f"description={text}")
    _check_message(e, "invalid --set ", "description=", word)


@pytest.mark.parametrize("name", HOSTILE_VALUES)
def test_hostile_environment_value(name):
    text, word = HOSTILE_VALUES[name]
    with pytest.raises(ConfigError) as e: load_profile("canary", env={"TVS_DISCOVERY__SCREENS": text})
    _check_message(e, "invalid environment variable TVS_DISCOVERY__SCREENS", word)


@pytest.mark.parametrize("name", HOSTILE_VALUES)
def test_hostile_manifest_file(tmp_path, name):
    text, word = HOSTILE_VALUES[name]
    inline = "\n" + "".join("      " + line + "\n" for line in text.splitlines())    # the value, indented under its key
    for i, body in enumerate([text, f"version: 1\nprofiles:\n  p:\n    description: x\n    extra:{inline}"]):
        if i == 1 and name == "two_documents": continue     # indented, '---' is text, not a second document
        path = tmp_path / f"m{i}.yaml"
        path.write_text(body, encoding="utf-8")
        with pytest.raises(ConfigError) as e: load_manifest(path)
        _check_message(e, f"invalid manifest '{path}'", word)


@pytest.mark.parametrize("make", [laughs, merge_bomb], ids=["laughs", "merge_bomb"])
def test_bombs_use_bounded_memory(tmp_path, make):
    "A bomb of 9**12 values is refused before it is built: the peak of Python allocations stays small."
    path = tmp_path / "bomb.yaml"
    path.write_text(make(levels=12))
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match="counting each alias as what it repeats"): load_manifest(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally: tracemalloc.stop()
    assert peak < 20 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_node_budget_is_exact():
    "The list itself plus its items: MAX_NODES values pass, one more does not; an alias weighs what it repeats."
    ok = "[" + ",".join(["1"] * (MAX_NODES - 1)) + "]"
    assert len(safe_yaml(ok, "x")) == MAX_NODES - 1
    with pytest.raises(ConfigError, match=f"more than {MAX_NODES} values counting each alias"): safe_yaml(ok[:-1] + ",1]", "x")
    ten = "&t [" + ",".join(["1"] * 9) + "]"                                    # 10 values
    n = (MAX_NODES - 1 - 10) // 10
    assert len(safe_yaml(f"[{ten}, " + ", ".join(["*t"] * n) + "]", "x")) == n + 1
    with pytest.raises(ConfigError, match="counting each alias"):
        safe_yaml(f"[{ten}, " + ", ".join(["*t"] * (n + 1)) + "]", "x")


def test_depth_budget_is_exact():
    assert safe_yaml("[" * MAX_DEPTH + "]" * MAX_DEPTH, "x") is not None
    with pytest.raises(ConfigError, match="nested deeper"): safe_yaml("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "x")
    deep = "&d " + "[" * 20 + "]" * 20                                          # an alias carries its anchor's depth
    with pytest.raises(ConfigError, match="nested deeper"): safe_yaml(f"[{deep}, " + "[" * 15 + "*d" + "]" * 15 + "]", "x")


def test_sizes():
    with pytest.raises(ConfigError, match=f"larger than {MAX_VALUE_BYTES} bytes"): parse_setting("description=" + "x" * (MAX_VALUE_BYTES + 1))
    assert parse_setting("description=" + "x" * 60_000)[1] == "x" * 60_000
    with pytest.raises(ConfigError, match=f"larger than {MAX_VALUE_BYTES} bytes"):
        load_profile("canary", env={"TVS_DESCRIPTION__X": "é" * (MAX_VALUE_BYTES // 2 + 1)})   # bytes, not characters
    with pytest.raises(ConfigError, match=f"larger than {MAX_TEXT_BYTES} bytes"): safe_yaml(b"x" * (MAX_TEXT_BYTES + 1), "x")


def test_environment_text_that_is_not_utf8():
    "os.environ holds undecodable bytes as lone surrogates: refused by name, not passed on."
    with pytest.raises(ConfigError, match=r"TVS_BACKTEST__HOLDING: not UTF-8 text \(character 1 is '\\udcff'\)"):
        load_profile("canary", env={"TVS_BACKTEST__HOLDING": "d\udcffrift"})


@pytest.mark.parametrize("data, byte", [("café".encode("latin-1"), "0xe9"), ("x".encode("utf-16"), "0xff"), (b"\xc0\xaf", "0xc0"),
                                        (b"\xed\xa0\x80", "0xed"), (b"ok \xf4\x90\x80\x80", "0xf4")],
                         ids=["latin1", "utf16", "overlong", "surrogate", "beyond_unicode"])
def test_manifest_not_utf8(tmp_path, data, byte):
    path = tmp_path / "m.yaml"
    path.write_bytes(b"version: 1\nprofiles:\n  a: {description: " + data + b"}\n")
    with pytest.raises(ConfigError, match=f"not UTF-8 text \\(byte \\d+ is {byte}\\)"): load_manifest(path)


def test_manifest_read_is_bounded(tmp_path):
    "A huge file is refused after reading at most MAX_TEXT_BYTES + 1 bytes of it (a sparse 256 MiB file here)."
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as f: f.truncate(256 * 2**20)
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match=f"at most {MAX_TEXT_BYTES} bytes"): load_manifest(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally: tracemalloc.stop()
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_manifest_utf8_bom_is_fine(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_bytes("\ufeffversion: 1\nprofiles:\n  a: {description: café}\n".encode("utf-8"))
    assert load_manifest(path)["profiles"]["a"]["description"] == "café"


def test_manifest_that_is_not_a_regular_file(tmp_path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="expected a regular file"): load_manifest(fifo)       # no writer: would block in open
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)                               # a writer that never closes: would block in read
    try:
        os.write(fd, b"version: 1\nprofiles: {a: {}}\n")
        with pytest.raises(ConfigError, match="expected a regular file"): load_manifest(fifo)
    finally: os.close(fd)
    (tmp_path / "link.yaml").symlink_to(fifo)
    with pytest.raises(ConfigError, match="expected a regular file"): load_manifest(tmp_path / "link.yaml")
    with pytest.raises(ConfigError, match="expected a regular file"): load_manifest(tmp_path)
    if os.path.exists("/dev/zero"):
        with pytest.raises(ConfigError, match="expected a regular file"): load_manifest("/dev/zero")
    big = tmp_path / "big.yaml"
    big.write_bytes(b"version: 1\n" + b"#" * MAX_TEXT_BYTES)
    with pytest.raises(ConfigError, match=f"at most {MAX_TEXT_BYTES} bytes"): load_manifest(big)


@pytest.mark.parametrize("ext", ["[b]", "{b: 1}", "1", "true", "1.5"])
def test_extends_must_be_a_name(tmp_path, ext):
    path = tmp_path / "m.yaml"
    path.write_text(f"version: 1\nprofiles:\n  a: {{extends: {ext}}}\n  b: {{}}\n")
    with pytest.raises(ConfigError, match="profiles.a.extends .*: expected the name of another profile"): load_manifest(path)


@pytest.mark.parametrize("version", ["true", "1.0", "'1'", "[1]", "{v: 1}", "null"])
def test_version_must_be_the_integer_1(tmp_path, version):
    path = tmp_path / "m.yaml"
    path.write_text(f"version: {version}\nprofiles:\n  a: {{}}\n")
    with pytest.raises(ConfigError, match="expected the integer 1"): load_manifest(path)


def _fields(model, prefix=""):
    "(dotted path, annotation) of every leaf setting of a settings model."
    for name, f in model.model_fields.items():
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, pydantic.BaseModel): yield from _fields(ann, f"{prefix}{name}.")
        else: yield prefix + name, ann


INTS = [p for p, a in _fields(Profile) if a in (int, int | None)]
FLOATS = [p for p, a in _fields(Profile) if a in (float, float | None)]


def test_the_battery_sees_the_settings():
    assert {"backtest.train", "backtest.periods_per_year", "data.history_bars", "orchestration.cpus"} <= set(INTS)
    assert {"backtest.cost_bps", "hydration.timeout_s", "allocation.shrinkage"} <= set(FLOATS)


@pytest.mark.parametrize("path", INTS)
@pytest.mark.parametrize("value", [2**31, 10**30, -10**30, True, False], ids=["2**31", "1e30", "-1e30", "true", "false"])
def test_every_integer_setting_is_bounded(path, value):
    with pytest.raises(ConfigError, match=f"{path}: "): load_profile("canary", env={}, overrides={path: value})
    with pytest.raises(ConfigError, match=f"{path}: "): load_profile("canary", env={f"TVS_{path.replace('.', '__')}": str(value)})


@pytest.mark.parametrize("path", FLOATS)
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), 1e300, True], ids=["inf", "-inf", "nan", "1e300", "true"])
def test_every_float_setting_is_finite_and_bounded(path, value):
    if value == 1e300 and path in ("allocation.gross_limit", "allocation.net_limit", "allocation.budget",
                                   "data.rules.toxic_return", "data.rules.print_move", "data.rules.print_revert"):
        pytest.skip("a large finite limit or threshold is harmless: it only compares")
    with pytest.raises(ConfigError, match=f"{path}: "): load_profile("canary", env={}, overrides={path: value})


def test_dates_stay_text():
    "YAML would read an unquoted date as a `datetime.date`; settings want the text (the model parses it)."
    assert load_profile("canary", env={"TVS_DATA__START": "2016-01-01"}).data.start == "2016-01-01"
    assert parse_setting("data.start=2016-01-01 10:00:00") == ("data.start", "2016-01-01 10:00:00")


def test_screen_filter_values_are_plain():
    scr = {"name": "s", "filters": [{"left": "x", "operation": "in_range", "right": [{"deep": [1]}]}]}
    with pytest.raises(ConfigError, match="discovery.screens.0.filters.0.right"):
        load_profile("canary", env={}, overrides={"discovery.screens": [scr]})
    scr["filters"][0]["right"] = [1, 2.5, "a", True, None]
    p = load_profile("canary", env={}, overrides={"discovery.screens": [scr]})
    assert Profile.model_validate_json(p.to_json()) == p


def test_in_memory_structures_are_bounded():
    shared = ["x"] * 10
    for _ in range(9): shared = [shared] * 10                                  # 10**10 values, 100 list objects
    with pytest.raises(ConfigError, match="explicit overrides: more than"):
        load_profile("canary", env={}, overrides={"discovery.screens": shared})
    loop = {}
    loop["a"] = loop
    with pytest.raises(ConfigError, match="contains itself"): load_profile("canary", env={}, overrides={"discovery": loop})
    with pytest.raises(ConfigError, match="manifest <manifest>: nested deeper"):
        load_profile("a", manifest={"version": 1, "profiles": {"a": {"description": loop}}}, env={})
    with pytest.raises(ConfigError, match="key 3 at backtest is not a string"): check_tree({"backtest": {3: 1}}, "explicit overrides")
    with pytest.raises(ConfigError, match="overrides"): load_profile("canary", env={}, overrides=["backtest.train"])


def test_error_messages_stay_short():
    huge_key = "k" * 10**6
    for kw in [dict(overrides={huge_key: 1}), dict(overrides={"description": "x" * 10**6, "backtest.train": "y" * 10**6}),
               dict(overrides={"discovery.screens": [{"name": "s", "limit": [0] * 100}] * 50}),   # 50 invalid settings
               dict(env={f"TVS_{huge_key}__X": "1"})]:
        with pytest.raises(ConfigError) as e: load_profile("canary", **({"env": {}} | kw))
        assert len(str(e.value)) < 3000, len(str(e.value))


# The CLI's `_parse_sets`, as it should read once it calls `parse_setting` (nbs/58_cli.ipynb, owned elsewhere)
def _parse_sets(sets) -> dict:
    "Parse `--set key=value` options into overrides (see `config.parse_setting`)."
    return dict(parse_setting(s, "--set") for s in sets)


def test_cli_parse_sets_replacement():
    "The cases of the CLI notebook's own tests, against the replacement `_parse_sets`."
    assert _parse_sets(["backtest.cost_bps=2.5", "allocation.optimizers=[hrp, erc]"]) == {"backtest.cost_bps": 2.5,
                                                                                          "allocation.optimizers": ["hrp", "erc"]}
    assert _parse_sets(["k='2'", "m={a: 1}", "e="]) == {"k": "2", "m": {"a": 1}, "e": ""}
    bomb = "x=[" + ", ".join([f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" if i else "&a0 [1]" for i in range(12)]) + "]"
    for bad in ["nokey", "train=[1", "x=!!python/object/apply:os.system ['echo pwned']", "x=" + "[" * 5000 + "]" * 5000, bomb,
                "k=\x00", "k={a: 1", "=1", " =1", "a..b=1", "a b=1", "x=" + "1" * 10**6]:
        with pytest.raises(ConfigError) as e: _parse_sets([bad])
        msg = f"tvs: error: {e.value}"
        assert msg.startswith("tvs: error: invalid --set") and len(msg) < 600 and "\x00" not in msg, msg


# --- symbols: the intended normalisation (ASCII case, surrounding ASCII whitespace) and nothing else -----------------------

LOOKALIKES = {"nyse:\u017fpy": "NYSE:SPY", "NYSE:\ufb01x": "NYSE:FIX", "\xa0NYSE:SPY\xa0": "NYSE:SPY", "NYSE:SPY\u3000": "NYSE:SPY",
              "\uff2e\uff39\uff33\uff25:\uff33\uff30\uff39": "NYSE:SPY", "NYSE:\u212aO": "NYSE:KO", "nyse:\u0131bm": "NYSE:IBM",
              "NASDAQ:AAPL\u2028": "NASDAQ:AAPL", "BINANCE:BTC\u2024P": "BINANCE:BTC.P", "\u1d3a\u1d3c:A": "NO:A",
              "NYSE:BRK\uff0eB": "NYSE:BRK.B", "CME_MINI:ES1\uff01": "CME_MINI:ES1!", "NYSE:\u2460": "NYSE:1"}
NO_RESEMBLANCE = ["NYSE:SP\u200bY", "NYSE:\u0405PY", "NY\u0421E:SPY", "NYSE:SPY\u202e", "\ufeffNYSE:SPY\u0301", "NYSE:\U0001d412PY\u200d"]


@pytest.mark.parametrize("text", LOOKALIKES)
def test_lookalike_symbols_are_refused_with_what_they_resemble(text):
    with pytest.raises(ValidationError) as e: Symbol.parse(text)
    msg = str(e.value)
    assert msg.isascii() and ascii(text) in msg and f"it resembles '{LOOKALIKES[text]}'" in msg, msg
    odd = next(c for c in text if not c.isascii())
    assert f"U+{ord(odd):04X} {unicodedata.name(odd)}" in msg


@pytest.mark.parametrize("text", NO_RESEMBLANCE)
def test_other_non_ascii_symbols_are_refused(text):
    with pytest.raises(ValidationError) as e: Symbol.parse(text)
    assert str(e.value).isascii() and ascii(text) in str(e.value) and "resembles" not in str(e.value)


def test_no_non_ascii_character_ever_becomes_a_symbol():
    "Every code point outside ASCII (the whole BMP, and a stride through the rest), in place of a letter or as padding."
    for cp in list(range(0x80, 0xD800)) + list(range(0xE000, 0x10000)) + list(range(0x10000, 0x110000, 97)):
        c = chr(cp)
        for text in (f"NYSE:{c}PY", f"{c}NYSE:SPY", f"NYSE:SPY{c}"):
            try: Symbol.parse(text)
            except ValidationError as e: assert len(str(e)) < 700
            else: raise AssertionError(f"{text!a} was accepted")


def test_intended_normalisation_stays():
    assert Symbol.parse(" \t\r\n\f\vnyse:brk.b \t") == Symbol("NYSE", "BRK.B")
    assert Symbol.parse("binance:btcusdt.p") == Symbol.parse("BINANCE:BTCUSDT.P")
    for ctrl in "\x1c\x1d\x1e\x1f\x85":                                        # Python's str.strip() would eat these
        with pytest.raises(ValidationError): Symbol.parse(f"{ctrl}NYSE:SPY")


def test_messages_never_build_a_full_repr():
    "`describe` shows a bomb (9**12 strings through 12 shared lists) in O(limit): a full repr would never end."
    bomb = "lol"
    for _ in range(12): bomb = [bomb] * 9
    msg = describe("setting", bomb, "something small")
    assert msg.startswith("invalid setting [[[[[[[[[[[['lol', 'lol'") and len(msg) < 250


def test_symbol_doors_refuse_lookalikes():
    with pytest.raises(ValidationError): encode_symbol("nyse:\u017fpy")
    with pytest.raises(ValidationError): safe_component("nyse:\u017fpy", "symbol")
    with pytest.raises(ValidationError, match="expected") as e: Symbol.parse("\u017f" * 10**7)     # big input, short message
    assert len(str(e.value)) < 700
