"""Every fault gets a clear outcome: sizes that cannot fit, runaway op expressions, corrupt
data sets and results files, two writers, stale temporaries, missing or unwritable folders,
file modes. Each is refused with one line (exit 2 on the CLI) and nothing written is lost."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from toylab.cli import main
from toylab.core.config import ConfigError
from toylab.core.store import Store
from toylab.core.sweep import load_results, run_sweep

TINY = dict(n_features=4, n_hidden=2, batch_size=16, steps=60, log_every=20)


@pytest.mark.parametrize("family, sets, names", [
    ("superposition", ["n_features=1000000000"], "n_features=1000000000: one run needs about"),
    ("superposition", ["batch_size=1000000000"], "batch_size=1000000000: one run needs about"),
    ("grokking", ["p=1000000"], "p=1000000: must be at most 46340"),
    ("grokking", ["p=30000"], "p=30000: one run needs about"),
    ("grokking", ["d_model=1000000000", "n_heads=1"], "d_model=1000000000: one run needs about"),
    ("groups", ["group=S7"], "group='S7': one run needs about"),
    ("superposition", ["steps=1000000000000"], "steps=1000000000000: must be at most 2147483647"),
])
def test_sizes_that_cannot_fit_are_refused_before_anything_is_written(tmp_path, capsys, family, sets, names):
    out = tmp_path / "out"
    args = ["run", family, "--out", str(out), "--quiet"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert names in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()
    # The same command is refused the same way again (no manifest left behind).
    assert main(args) == 2


def test_chunk_that_cannot_fit_names_a_chunk_size_that_does(monkeypatch):
    from toylab.core import sweep

    monkeypatch.setattr(sweep, "memory_bytes", lambda: (2_000_000, "a small test device"))
    with pytest.raises(ConfigError, match=r"chunk_size=64: 64 runs at once .* use --chunk-size \d+ or less"):
        run_sweep("superposition", {**TINY, "n_features": 200, "n_hidden": 100}, seeds=64, quiet=True)


def test_op_expression_is_bounded_in_time():
    from toylab.families.grokking import GrokkingConfig

    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"op=.*can reach about 2\*\*\d+ .* more than 2\*\*4096"):
        GrokkingConfig(op="(((a**64)**64)**64)**64")
    with pytest.raises(ConfigError, match="p must be at most 3000"):
        GrokkingConfig(op="a*b+1", p=5000)
    assert time.perf_counter() - t0 < 5  # was a hang; generous for a loaded CI box


def test_int64_fast_path_matches_exact_python_integers():
    from toylab.tasks.modular import _evaluate, _expression_bits, _parse_expression

    a, b = (x.ravel() for x in np.meshgrid(np.arange(23), np.arange(23), indexing="ij"))
    for expr in ["a**3 - 7*b//(a+1) + (a-b)%5", "(a-b)//3 - a*b**4", "-(a**2) % 7 + b"]:
        code = _parse_expression(expr, 23)[0]
        assert _expression_bits(expr, 23) <= 62
        np.testing.assert_array_equal(_evaluate(code, a, b, 23, 10), _evaluate(code, a, b, 23, None))
    # A bound above int64 takes the exact path (values beyond 2**63 reduce correctly).
    code = _parse_expression("a**20 + b", 23)[0]
    assert _expression_bits("a**20 + b", 23) > 62
    want = np.asarray([(int(x) ** 20 + int(y)) % 23 for x, y in zip(a, b)])
    np.testing.assert_array_equal(_evaluate(code, a, b, 23, _expression_bits("a**20 + b", 23)), want)


def _digits_npz(path, n=60):
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.random((n, 16), dtype=np.float32), y=np.arange(n) % 3)
    return path


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_npz_data_set_is_one_line(tmp_path, capsys, damage):
    from toylab.tasks.images import clear_cache

    path = _digits_npz(tmp_path / "data.npz")
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    else:
        raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    clear_cache()
    rc = main(["run", "bilinear", "--set", f"dataset={path}", "--set", "steps=20", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "dataset=" in err and ("corrupt" in err or "cannot read" in err) and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def _finished(tmp_path, name="sweep", **kw):
    out = tmp_path / name
    run_sweep("superposition", TINY, {"feature_probability": [0.5, 0.1]}, seeds=2, out=out, chunk_size=2,
              quiet=True, **kw)
    return out


@pytest.mark.parametrize("damage", ["flip params", "swap params", "truncate npz", "swap npz"])
def test_changed_or_swapped_results_files_are_detected(tmp_path, damage):
    out = _finished(tmp_path)
    chunks = out / "chunks"
    a, b = chunks / "g000-c0000", chunks / "g000-c0001"
    if damage == "flip params":
        raw = bytearray((a.with_suffix(".params.eqx")).read_bytes())
        raw[-3] ^= 0x01
        a.with_suffix(".params.eqx").write_bytes(bytes(raw))
        name = "g000-c0000.params.eqx"
    elif damage == "swap params":
        b.with_suffix(".params.eqx").replace(a.with_suffix(".params.eqx"))
        name = "g000-c0000.params.eqx"
    elif damage == "truncate npz":
        p = a.with_suffix(".npz")
        p.write_bytes(p.read_bytes()[:100])
        name = "g000-c0000.npz"
    else:
        b.with_suffix(".npz").replace(a.with_suffix(".npz"))
        name = "g000-c0000.npz"
    with pytest.raises(ConfigError, match=rf"chunks/{name} .*(checksum|missing)"):
        load_results(out)
    with pytest.raises(ConfigError, match=rf"chunks/{name}"):  # a resume does not build on it either
        run_sweep("superposition", TINY, {"feature_probability": [0.5, 0.1]}, seeds=2, out=out, chunk_size=2,
                  resume=True, quiet=True)


class _Stop(Exception):
    pass


def _checkpointed(tmp_path, monkeypatch):
    out = tmp_path / "ck"
    real = Store.save_checkpoint

    def save(self, chunk_id, tree, header):
        real(self, chunk_id, tree, header)
        raise _Stop
    with monkeypatch.context() as m:
        m.setattr(Store, "save_checkpoint", save)
        with pytest.raises(_Stop):
            run_sweep("superposition", TINY, seeds=2, out=out, segments=3, quiet=True)
    ckpt = out / "checkpoints" / "g000-c0000.ckpt"
    assert ckpt.exists()
    return out, ckpt


@pytest.mark.parametrize("where", ["step counter", "payload"])
def test_flipped_byte_in_a_checkpoint_is_refused_untouched(tmp_path, monkeypatch, where):
    out, ckpt = _checkpointed(tmp_path, monkeypatch)
    raw = ckpt.read_bytes()
    head, payload = raw.split(b"\n", 1)
    if where == "step counter":
        header = json.loads(head)
        header["steps_done"] += TINY["log_every"]  # as a flipped digit would
        raw = json.dumps(header).encode() + b"\n" + payload
        match = "inconsistent"
    else:
        payload = bytearray(payload)
        payload[len(payload) // 2] ^= 0x10
        raw = head + b"\n" + bytes(payload)
        match = "checksum"
    ckpt.write_bytes(raw)
    with pytest.raises(ConfigError, match=match):
        run_sweep("superposition", TINY, seeds=2, out=out, segments=3, resume=True, quiet=True)
    assert ckpt.read_bytes() == raw


def test_two_writers_are_locked_out(tmp_path):
    out = _finished(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(out / '.lock')!r}, os.O_RDWR)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.pwrite(fd, str(os.getpid()).encode(), 0)\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=rf"another toylab process \(pid {holder.pid}\) is writing"):
            run_sweep("superposition", TINY, {"feature_probability": [0.5, 0.1]}, seeds=2, out=out, chunk_size=2,
                      resume=True, quiet=True)
    finally:
        holder.kill()
        holder.wait()
    # Released: the same resume goes through.
    run_sweep("superposition", TINY, {"feature_probability": [0.5, 0.1]}, seeds=2, out=out, chunk_size=2,
              resume=True, quiet=True)


def test_two_sweeps_racing_into_one_new_folder_cannot_both_succeed(tmp_path):
    out = tmp_path / "race"
    code = ("import sys\nfrom toylab.cli import main\n"
            "sys.exit(main(['run', 'superposition', '--set', 'n_features=4', '--set', 'n_hidden=2', '--set', "
            "'steps=400', '--set', 'log_every=20', '--set', f'feature_probability={sys.argv[1]}', '--quiet', "
            f"'--out', {str(out)!r}]))")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    procs = [subprocess.Popen([sys.executable, "-c", code, v], env=env, stderr=subprocess.PIPE, text=True)
             for v in ("0.5", "0.1")]
    codes = [p.wait(timeout=300) for p in procs]
    errs = [p.stderr.read() for p in procs]
    assert sorted(codes) == [0, 2], errs
    loser = errs[codes.index(2)]
    assert "another toylab process" in loser or "different sweep" in loser
    winner_fp = float(["0.5", "0.1"][codes.index(0)])
    assert load_results(out)[0].config.feature_probability == winner_fp


def test_stale_temporaries_are_removed_when_the_folder_is_opened(tmp_path):
    out = _finished(tmp_path)
    stale = [out / ".manifest.json.abc.tmp", out / "chunks" / ".g000-c0000.npz.x1.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")
    run_sweep("superposition", TINY, {"feature_probability": [0.5, 0.1]}, seeds=2, out=out, chunk_size=2,
              resume=True, quiet=True)
    assert not any(p.exists() for p in stale)


def test_resume_of_a_missing_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["run", "superposition", "--resume", "--out", str(out)]) == 2
    assert "holds no sweep to resume" in capsys.readouterr().err
    assert not out.exists()


def test_unwritable_out_is_refused_before_training(tmp_path, capsys):
    file = tmp_path / "a-file"
    file.write_text("x")
    for out in ("/proc/toylab-cannot-write", str(file / "sub")):
        t0 = time.perf_counter()
        assert main(["run", "grokking", "--out", out]) == 2
        assert time.perf_counter() - t0 < 30  # refused before 40 000 steps of training
        err = capsys.readouterr().err
        assert "out=" in err and err.count("\n") == 1
    assert file.read_text() == "x"
    assert main(["reproduce", "--quick", "--out", "/proc/toylab-cannot-write"]) == 2
    assert "not writable" in capsys.readouterr().err


def test_results_files_get_the_users_umask(tmp_path):
    old = os.umask(0o027)
    try:
        out = _finished(tmp_path, "masked")
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.rglob("*") if p.is_file()}
    assert modes and all(m == 0o640 for m in modes.values()), modes
