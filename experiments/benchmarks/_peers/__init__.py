"""Scripts the benchmark peers' own python runs (torch, devinterp, PyHessian; never JAX or
toylab): ``python peers/devinterp_llc.py FILE.npz`` and ``peers/pyhessian_top.py``. A package
only so that the scripts install with the benchmarks; nothing here is imported by toylab."""
