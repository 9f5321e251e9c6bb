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
@pytest.mark.slow
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
        "os.ftruncate(fd, 0)\n"  # as the store does: a shorter pid leaves no digits of the last one
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


@pytest.mark.slow
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


# ----------------------------------------------------------------------------- sizes from the probe

BIG = "1" + "0" * 30  # 10**30


@pytest.mark.parametrize("extra, names", [
    (["--seeds", BIG], f"seeds={BIG}: must be at most 1000000"),
    (["--seeds", "10000000"], "seeds=10000000: must be at most 1000000"),
    (["--grid", "feature_probability=0.1,0.2", "--seeds", "600000"], "grid='1200000 runs': a sweep holds at most"),
    (["--set", f"n_hidden={BIG}"], f"n_hidden={BIG}: must be at most 2147483647"),
    (["--set", f"n_features={BIG}"], f"n_features={BIG}: must be at most 2147483647"),
    (["--set", f"seed={BIG}"], f"seed={BIG}: must be an integer in [0, 4294967295]"),
    (["--set", f"data_seed={BIG}"], f"data_seed={BIG}: must be an integer in [0, 4294967295]"),
    (["--set", "seed=4294967295", "--seeds", "2"], "seeds=2: seed + seeds - 1 = 4294967296 must be at most"),
    (["--set", "n_hidden=1000000000000"], "n_hidden=1000000000000: must be at most 2147483647"),
    (["--set", "n_hidden=2000000000"], "n_hidden=2000000000: one run needs about"),
    (["--set", "lr=1e39"], "lr=1e+39: must be at most 3.403e+38 in size"),
])
def test_probe_sizes_are_refused_in_one_line_before_the_folder_exists(tmp_path, capsys, extra, names):
    out = tmp_path / "out"
    t0 = time.perf_counter()
    assert main(["run", "superposition", "--out", str(out), "--quiet"] + extra) == 2
    err = capsys.readouterr().err
    assert names in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not out.exists()
    assert time.perf_counter() - t0 < 30  # was 40 s of silence, or a 24 GB process


def test_params_count_in_the_memory_estimate():
    from toylab.core import sweep
    from toylab.core.family import get_family

    family = get_family("superposition")
    cfg = family.config(n_features=1000, n_hidden=1000, batch_size=1)
    state, _ = sweep._instance_bytes(family, cfg)
    params = (1000 * 1000 + 1000) * 4
    assert state >= 4 * params  # params, gradients and Adam's two moments


def test_a_failed_start_leaves_no_folder_and_a_manifest_alone_blocks_no_retry(tmp_path, monkeypatch):
    from toylab.core.train import Trainer

    out = tmp_path / "s"

    def fails(*a, **k):
        raise RuntimeError("the device went away")
    with monkeypatch.context() as m:
        m.setattr(Trainer, "run", fails)
        with pytest.raises(RuntimeError, match="device went away"):
            run_sweep("superposition", TINY, seeds=2, out=out, quiet=True)
    assert not out.exists()
    # A folder holding only another sweep's manifest (a start killed before its first
    # checkpoint) holds nothing to lose: a new sweep takes it over.
    other = _finished(tmp_path, "other")
    out.mkdir()
    (out / "manifest.json").write_bytes((other / "manifest.json").read_bytes())
    res = run_sweep("superposition", {**TINY, "n_hidden": 3}, seeds=1, out=out, quiet=True)
    assert len(res) == 1 and res[0].model.W.shape == (3, 4)
    assert json.loads((out / "manifest.json").read_text())["base"]["n_hidden"] == 3
    # A folder with trained chunks is still refused as a different sweep, naming the field.
    with pytest.raises(ConfigError, match=r"different sweep \(in its base, n_hidden is 3 there, 2 here\)"):
        run_sweep("superposition", TINY, seeds=1, out=out, quiet=True)


def test_intact_files_that_do_not_fit_the_model_are_never_to_be_deleted(tmp_path):
    import dataclasses

    from toylab.core.family import get_family
    from toylab.models.superposition import init_toy_model

    out = _finished(tmp_path)
    before = {p.name: p.read_bytes() for p in (out / "chunks").iterdir()}
    base = get_family("superposition")
    # As a family whose model shapes come from outside the folder (a dictionary's source
    # run) sees it once that outside input changed: the same config builds other shapes.
    no_skeleton = {"skeleton": None} if hasattr(base, "skeleton") else {}
    wider = dataclasses.replace(base, name="superposition-wider", **no_skeleton,
                                init=lambda cfg, hp, key: init_toy_model(key, cfg.n_features, cfg.n_hidden + 1,
                                                                         cfg.model))
    loaded = load_results(out, family=wider)
    with pytest.raises(ConfigError) as e:
        loaded[0].model
    msg = str(e.value)
    assert "chunks/g000-c0000.params.eqx is intact" in msg and "delete" not in msg and "keep the files" in msg
    assert {p.name: p.read_bytes() for p in (out / "chunks").iterdir()} == before


def test_an_edited_manifest_is_refused_on_load_and_resume(tmp_path):
    out = _finished(tmp_path)
    path = out / "manifest.json"
    manifest = json.loads(path.read_text())
    assert load_results(out)[0].config.lr == manifest["base"]["lr"]
    manifest["base"]["lr"] = 0.5
    path.write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=r"manifest.json was changed after chunks/g000-c0000 was trained"):
        load_results(out)
    with pytest.raises(ConfigError, match=r"manifest.json was changed after"):  # the edited command's resume
        run_sweep("superposition", {**TINY, "lr": 0.5}, {"feature_probability": [0.5, 0.1]}, seeds=2, out=out,
                  chunk_size=2, resume=True, quiet=True)


def test_a_truncated_summary_is_rebuilt_from_the_chunks_with_a_warning(tmp_path):
    out = _finished(tmp_path)
    rows = json.loads((out / "summary.json").read_text())
    (out / "summary.json").write_text((out / "summary.json").read_text()[:40])
    with pytest.warns(UserWarning, match=r"summary.json cannot be read .*rebuilt from the chunks"):
        res = load_results(out)
    assert res.summary == rows and len(rows) == 4


def test_a_deleted_completion_record_names_the_runs_left_out(tmp_path):
    out = _finished(tmp_path)
    (out / "chunks" / "g000-c0001.done.json").unlink()
    with pytest.warns(UserWarning) as caught:
        res = load_results(out)
    msg = str(caught[0].message)
    assert "2 of 4 runs are not finished" in msg and "chunks/g000-c0001.done.json" in msg
    assert "run 2 (feature_probability=0.1, seed 0); run 3 (feature_probability=0.1, seed 1)" in msg
    assert res.missing == [2, 3] and [r.index for r in res] == [0, 1]
    # A resume trains that chunk again and completes the folder.
    done = run_sweep("superposition", TINY, {"feature_probability": [0.5, 0.1]}, seeds=2, out=out, chunk_size=2,
                     resume=True, quiet=True)
    assert len(done) == 4 and done.missing == []


@pytest.mark.parametrize("values", ["-0.0,0.0", "0.1,0.1", "0.1,0.10000000001"])
def test_grid_values_that_are_one_value_are_refused(tmp_path, capsys, values):
    out = tmp_path / "g"
    assert main(["run", "superposition", "--grid", f"weight_decay={values}", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "weight_decay=" in err and "must be distinct" in err and err.count("\n") == 1
    assert not out.exists()


def test_negative_zero_is_zero():
    from toylab.families.superposition import SuperpositionConfig

    cfg = SuperpositionConfig(weight_decay=-0.0)
    assert str(cfg.weight_decay) == "0.0" and cfg.to_dict()["weight_decay"] == 0.0


def test_a_count_given_a_fraction_is_refused():
    from toylab.families.dictionaries import DictionaryConfig

    for kind in ("topk", "matryoshka"):  # latents kept per example: a count
        extra = {"prefixes": (8, 64), "n_latents": 64} if kind == "matryoshka" else {}
        with pytest.raises(ConfigError, match=rf"k=2.5: must be a whole number for kind={kind}"):
            DictionaryConfig(kind=kind, k=2.5, **extra)
    assert DictionaryConfig(kind="topk", k=2).k == 2.0
    # batchtopk's k is an average over the batch: k·batch_size is the count
    assert DictionaryConfig(kind="batchtopk", k=2.5, batch_size=512).k == 2.5
    with pytest.raises(ConfigError, match=r"k=2.5: times batch_size=5 must be a whole number"):
        DictionaryConfig(kind="batchtopk", k=2.5, batch_size=5)


def test_an_edited_manifest_under_a_checkpoint_is_refused(tmp_path, monkeypatch):
    out, ckpt = _checkpointed(tmp_path, monkeypatch)
    path = out / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["base"]["lr"] = 0.5
    path.write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=r"manifest.json was changed after checkpoints/g000-c0000.ckpt was trained"):
        run_sweep("superposition", {**TINY, "lr": 0.5}, seeds=2, out=out, segments=3, resume=True, quiet=True)
    assert ckpt.exists()


def test_results_that_cannot_be_held_are_refused_before_anything(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    from toylab.core import sweep

    out = tmp_path / "small-disk"
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**6, 10**6 - 100, 100))
    with pytest.raises(ConfigError, match=r"out=.*small-disk.*need about .* more than the 100 B free on its disk"):
        run_sweep("superposition", TINY, seeds=4, out=out, quiet=True)
    assert not out.exists()
    monkeypatch.setattr(sweep, "_host_memory_bytes", lambda: 100)
    with pytest.raises(ConfigError, match=r"out=None: the results .* more than this machine's 100 B of memory; "
                                          r"give a results folder \(out=\.\.\.\)"):
        run_sweep("superposition", TINY, seeds=4, quiet=True)


def _unfinished(tmp_path):
    """A finished folder with its second chunk's completion record removed."""
    out = _finished(tmp_path)
    (out / "chunks" / "g000-c0001.done.json").unlink()
    return out


def test_a_folder_from_before_a_new_config_field_resumes(tmp_path):
    """A field a folder's lab version did not have was at its default there: the folder
    resumes (an older folder records no manifest checksum with its chunks either)."""
    out = _unfinished(tmp_path)
    path = out / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["base"]["anticorrelated_sets"]  # as a manifest written before the field existed
    path.write_text(json.dumps(manifest))
    done = out / "chunks" / "g000-c0000.done.json"
    record = json.loads(done.read_text())
    record.pop("manifest_sha256")
    done.write_text(json.dumps(record))
    res = run_sweep("superposition", TINY, {"feature_probability": [0.5, 0.1]}, seeds=2, out=out, chunk_size=2,
                    resume=True, quiet=True)
    assert len(res) == 4 and res.missing == []
    # a field that differs from its default is still a different sweep
    out2 = _unfinished(tmp_path / "again")
    manifest = json.loads((out2 / "manifest.json").read_text())
    with pytest.raises(ConfigError, match=r"holds a different sweep \(in its base, anticorrelated_sets is 0 there, 1 here"):
        run_sweep("superposition", {**TINY, "anticorrelated_sets": 1}, {"feature_probability": [0.5, 0.1]}, seeds=2,
                  out=out2, chunk_size=2, resume=True, quiet=True)
    assert json.loads((out2 / "manifest.json").read_text()) == manifest  # untouched


def test_a_resume_whose_configs_read_other_data_is_refused(tmp_path, monkeypatch):
    """What a config reads from outside (a data file's sizes, a source run's fingerprint) is
    part of the sweep: a resume that reads something else is refused, the folder untouched."""
    from toylab.families.superposition import SuperpositionConfig

    monkeypatch.setattr(SuperpositionConfig, "check_data", lambda self: {"rows": 100})
    out = _unfinished(tmp_path)
    monkeypatch.setattr(SuperpositionConfig, "check_data", lambda self: {"rows": 90})
    with pytest.raises(ConfigError, match=r"what its configs read from outside changed .*\{\"rows\": 100\} there, "
                                          r"\{\"rows\": 90\} here"):
        run_sweep("superposition", TINY, {"feature_probability": [0.5, 0.1]}, seeds=2, out=out, chunk_size=2,
                  resume=True, quiet=True)
    monkeypatch.setattr(SuperpositionConfig, "check_data", lambda self: {"rows": 100})
    res = run_sweep("superposition", TINY, {"feature_probability": [0.5, 0.1]}, seeds=2, out=out, chunk_size=2,
                    resume=True, quiet=True)
    assert len(res) == 4
