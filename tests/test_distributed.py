"""Sweeps across processes on jax.distributed, run for real: two processes on 127.0.0.1 with
two emulated CPU devices each (gloo collectives), started through the CLI."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from toylab.core.sweep import load_results, run_sweep

pytestmark = pytest.mark.slow

FIELDS = ["--set", "n_features=6", "--set", "n_hidden=2", "--set", "batch_size=64", "--set", "log_every=20",
          "--grid", "feature_probability=0.5,0.1,0.02", "--seeds", "2"]
BASE = dict(n_features=6, n_hidden=2, batch_size=64, log_every=20)
GRID = {"feature_probability": [0.5, 0.1, 0.02]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(out, steps, extra=(), port=None):
    port = port or _free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    args = [sys.executable, "-m", "toylab", "run", "superposition", *FIELDS, "--set", f"steps={steps}",
            "--out", str(out), "--quiet", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", *extra]
    return [subprocess.Popen(args + ["--process-id", str(i)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for i in range(2)]


def _finish(procs, timeout=240):
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        outs.append((p.returncode, stdout, stderr))
    return outs


def _assert_matches_single_process(results, steps):
    single = run_sweep("superposition", {**BASE, "steps": steps}, GRID, seeds=2, quiet=True)
    assert len(results) == len(single) == 6
    for a, b in zip(results, single):
        assert (a.config, a.seed) == (b.config, b.seed)
        # 4 devices × 2 rows against one device × 6 rows: XLA fuses the vmap widths differently
        np.testing.assert_allclose(a.model.W, b.model.W, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a.model.b, b.model.b, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a.metrics["loss"], b.metrics["loss"], rtol=1e-5)
        for k in b.summary:
            np.testing.assert_allclose(a.summary[k], b.summary[k], rtol=1e-4, atol=1e-6)


def test_two_processes_equal_one(tmp_path):
    out = tmp_path / "two"
    (rc0, out0, err0), (rc1, out1, err1) = _finish(_start(out, 400))
    assert rc0 == 0 and rc1 == 0, (err0[-1500:], err1[-1500:])
    assert "6 runs of superposition" in out0  # process 0 reports ...
    assert "runs of" not in out1  # ... the other computes beside it (gloo chatters on stdout)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["process_count"] == 2 and len(manifest["devices"]) == 4
    assert len(json.loads((out / "summary.json").read_text())) == 6
    _assert_matches_single_process(load_results(out), 400)


def test_every_process_returns_the_full_results(tmp_path):
    """run_sweep in each process (the Python API) returns all runs, read after process 0 wrote."""
    port = _free_port()
    out = tmp_path / "api"
    code = (
        "import sys, json\n"
        "import toylab\n"
        f"toylab.init_distributed('127.0.0.1:{port}', 2, int(sys.argv[1]))\n"
        f"r = toylab.run_sweep('superposition', {BASE!r} | {{'steps': 100}}, {GRID!r}, seeds=2, out={str(out)!r},"
        " quiet=True)\n"
        "print(json.dumps([len(r), sorted(x.index for x in r), float(r[5].model.W.sum())]))\n")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(i)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    results = _finish(procs)
    assert [rc for rc, _, _ in results] == [0, 0], [e[-1500:] for _, _, e in results]
    seen = [json.loads(o.strip().splitlines()[-1]) for _, o, _ in results]
    assert seen[0] == seen[1] and seen[0][0] == 6 and seen[0][1] == list(range(6))


def test_sigkill_one_process_then_resume_both(tmp_path):
    out = tmp_path / "killed"
    steps = 4000
    procs = _start(out, steps, extra=["--segments", "40", "--chunk-size", "4"])
    ckpt = out / "checkpoints"
    t0 = time.time()
    # Kill process 1 once the second chunk is under way: one chunk finished, one checkpointed.
    while time.time() - t0 < 240 and not (list(ckpt.glob("g000-c0001.ckpt")) if ckpt.exists() else []):
        assert procs[0].poll() is None, procs[0].communicate()[1][-1500:]
        time.sleep(0.02)
    os.kill(procs[1].pid, signal.SIGKILL)
    (rc0, _, err0), (rc1, _, _) = _finish(procs, timeout=60)
    assert rc1 == -signal.SIGKILL
    # The survivor says what happened in one line and leaves at once (no hang, no stack dump).
    assert rc0 == 75, err0[-1500:]
    last = [line for line in err0.splitlines() if line.startswith("toylab run:")]
    assert last and "lost another process" in last[-1] and "--resume" in last[-1]
    finished = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in (out / "chunks").glob("*")}
    assert "g000-c0000.done.json" in finished and "g000-c0001.done.json" not in finished
    head = json.loads((ckpt / "g000-c0001.ckpt").open("rb").readline())
    assert 0 < head["steps_done"] < steps

    (rc0, out0, err0), (rc1, _, err1) = _finish(_start(out, steps, extra=["--segments", "40", "--chunk-size", "4",
                                                                          "--resume"]))
    assert rc0 == 0 and rc1 == 0, (err0[-1500:], err1[-1500:])
    # Nothing lost: the finished chunk's files were not rewritten ...
    for name, stamp in finished.items():
        p = out / "chunks" / name
        assert (p.stat().st_mtime_ns, p.stat().st_ino) == stamp
    # ... and nothing trained twice: the restart trained only what the checkpoint lacked.
    line = next(line for line in out0.splitlines() if line.startswith("instance-steps:"))
    trained, resumed, done = (int(w) for w in line.replace(",", " ").split() if w.isdigit())
    assert done == 4 * steps and resumed == 2 * head["steps_done"] and trained == 2 * steps - resumed
    assert not list(ckpt.glob("*.ckpt"))
    _assert_matches_single_process(load_results(out), steps)
