"""mxlstm's CPU kernel: equal to MXNet's fused operator, to the float64 numpy reference and
its finite differences, exact with variable lengths, hybridized == imperative, honest
INFO line, and exports that keep MXNet's own RNN operator."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import numpy_reference as ref
import pytest
from mxnet import autograd

from mxlstm import GRU, LSTM, RNN, kernels
from mxlstm.kernels import build as kernel_build
from mxlstm.kernels import layer as kernel_layer

REASON = kernels.status()
needs_kernel = pytest.mark.skipif(REASON is not None, reason=f"mxlstm kernel: {REASON}")
LAYERS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}
STEPS = {"lstm": ref.lstm_step, "gru": ref.gru_step, "rnn": ref.rnn_step}


@pytest.fixture
def operator(monkeypatch):
    """``operator('kernel' | 'mxnet')`` selects which operator the fused path runs."""
    def select(which: str) -> None:
        monkeypatch.setenv("MXLSTM_KERNEL", "1" if which == "kernel" else "0")
    return select


def make(kind, hidden, layers, bidirectional, x, **kwargs):
    layer = LAYERS[kind](hidden, layers, bidirectional=bidirectional, fused=True, **kwargs)
    layer.initialize(mx.init.Uniform(0.5))
    layer(x)
    return layer


def run(layer, x, *args, train=True):
    """Outputs, final states, parameter gradients and input gradient of a fixed loss."""
    x = x.copy()
    x.attach_grad()
    with autograd.record(train_mode=train):
        result = layer(x, *args)
        out, states = result if isinstance(result, (tuple, list)) else (result, [])
        loss = (out * out).sum() + sum((s * 0.3).sum() for s in states)
    loss.backward()
    grads = {k: p.grad().asnumpy().copy() for k, p in layer.collect_params().items()}
    return out.asnumpy(), [s.asnumpy() for s in states], grads, x.grad.asnumpy()


def assert_grads_close(got: dict, want: dict, rtol=1e-4):
    for key in want:
        scale = max(np.abs(want[key]).max(), 1e-3)
        assert np.abs(got[key] - want[key]).max() / scale <= rtol, key


SHAPES = [  # kind, H, layers, bidirectional, N, T, C
    ("lstm", 13, 1, False, 1, 1, 3), ("lstm", 9, 2, True, 3, 7, 5),
    ("lstm", 16, 2, False, 5, 4, 16), ("gru", 13, 1, True, 1, 6, 2),
    ("gru", 7, 2, False, 4, 1, 3), ("rnn", 11, 2, True, 2, 5, 4),
    # several 6-row blocks and a partial 16-column panel of the packed step product;
    # large enough for its OpenMP loop
    ("lstm", 50, 1, True, 40, 3, 7), ("gru", 21, 1, False, 13, 4, 5),
    # backward in several chunks of steps (a chunk holds about 1024 rows)
    ("lstm", 8, 1, True, 150, 9, 3), ("gru", 6, 2, True, 130, 10, 2),
    # an input wider than 64: the projection for all steps apart from the step product
    ("lstm", 12, 1, True, 5, 4, 70), ("rnn", 9, 2, False, 7, 3, 66),
    # a short last backward chunk (2 steps = 34 rows) whose weight gradients are packed
    # while a whole chunk's (60 steps) are not: the workspace must hold both (it held only
    # the whole chunk's and the packing wrote past it: heap corruption in text training)
    ("lstm", 40, 1, True, 17, 62, 40), ("gru", 40, 1, False, 17, 62, 40),
]


@needs_kernel
@pytest.mark.parametrize("gemm", ["auto", "blas", "packed"])
@pytest.mark.parametrize("kind,hidden,layers,bi,n,t,c", SHAPES)
def test_kernel_equals_mxnet_fused_operator(operator, monkeypatch, kind, hidden, layers, bi, n,
                                            t, c, gemm):
    """Every product route (packed AVX2 kernel where it is chosen, all BLAS, all packed)."""
    monkeypatch.setenv("MXLSTM_KERNEL_GEMM", gemm)
    rng = np.random.RandomState(hidden * 7 + t)
    x = mx.nd.array(rng.normal(size=(n, t, c)))
    layer = make(kind, hidden, layers, bi, x, return_states=True)
    begin = [mx.nd.array(rng.normal(size=i["shape"])) for i in layer.state_info(n)]
    operator("mxnet")
    want = run(layer, x, None, begin)
    operator("kernel")
    got = run(layer, x, None, begin)
    np.testing.assert_allclose(got[0], want[0], atol=1e-5)
    for a, b in zip(got[1], want[1]):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert_grads_close(got[2], want[2])
    np.testing.assert_allclose(got[3], want[3], atol=1e-4 * max(np.abs(want[3]).max(), 1))


@needs_kernel
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_saturated_gates_equal_mxnet_and_stay_finite(operator, kind):
    """Pre-activations of +-100s (the kernel's own exp clamps its argument): the same
    outputs, states and gradients as MXNet's operator, nothing infinite or NaN."""
    rng = np.random.RandomState(5)
    x = mx.nd.array(rng.normal(scale=40.0, size=(3, 6, 5)))
    layer = make(kind, 12, 1, True, x, return_states=True)
    operator("mxnet")
    want = run(layer, x)
    operator("kernel")
    got = run(layer, x)
    assert np.isfinite(got[0]).all() and all(np.isfinite(g).all() for g in got[2].values())
    np.testing.assert_allclose(got[0], want[0], atol=1e-5)
    for a, b in zip(got[1], want[1]):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert_grads_close(got[2], want[2])


def reference_loss(kind, params, x, lengths, hidden, bidirectional):
    """float64 loss of the numpy reference: sum of squared outputs + 0.3 sum of final states,
    each sequence run alone (unpadded)."""
    total = 0.0
    for n, length in enumerate(lengths):
        seq = x[n:n + 1, :length]
        finals = []
        outs = []
        for d in ("l", "r") if bidirectional else ("l",):
            p = {k[3:]: v for k, v in params.items() if k.startswith(f"{d}0_")}
            zeros = [np.zeros((1, hidden))] * (2 if kind == "lstm" else 1)
            inp = seq if d == "l" else seq[:, ::-1]
            out, final = ref.run_sequence(STEPS[kind], inp, zeros, p=p)
            outs.append(out)
            finals += final
        total += sum((o ** 2).sum() for o in outs) + sum(0.3 * f.sum() for f in finals)
    return total


@needs_kernel
@pytest.mark.parametrize("kind,bidirectional", [("lstm", True), ("gru", False), ("rnn", True)])
def test_gradients_equal_finite_differences_of_the_float64_reference(operator, kind,
                                                                     bidirectional):
    """Padded batch with lengths (incl. 1 and T): kernel gradients == central differences of
    the numpy float64 loss of each sequence run alone."""
    operator("kernel")
    rng = np.random.RandomState(5)
    hidden, lengths = 3, [4, 1, 3]
    x = rng.normal(size=(3, 4, 2))
    layer = LAYERS[kind](hidden, 1, bidirectional=bidirectional, fused=True, return_states=True)
    layer.initialize(mx.init.Uniform(0.5))
    layer(mx.nd.array(x))
    _, _, grads, _ = run(layer, mx.nd.array(x), mx.nd.array(lengths))
    params = {k: p.data().asnumpy().astype(np.float64) for k, p in layer._reg_params.items()}
    names = {p.name: k for k, p in layer._reg_params.items()}
    eps = 1e-6
    for full, key in names.items():
        value = params[key]
        numeric = np.zeros_like(value)
        for i in np.ndindex(value.shape):
            old = value[i]
            value[i] = old + eps
            up = reference_loss(kind, params, x, lengths, hidden, bidirectional)
            value[i] = old - eps
            down = reference_loss(kind, params, x, lengths, hidden, bidirectional)
            value[i] = old
            numeric[i] = (up - down) / (2 * eps)
        scale = max(np.abs(numeric).max(), 1e-3)
        assert np.abs(grads[full] - numeric).max() / scale <= 1e-4, key


@needs_kernel
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_lengths_exact_outputs_and_final_states_as_alone(operator, kind):
    """Outputs past the end are 0; final h (and c) are those of the last valid step,
    equal to the float64 reference, hybridized, with padding that must not leak."""
    operator("kernel")
    rng = np.random.RandomState(1)
    layer = LAYERS[kind](9, 2, bidirectional=True, fused=True, return_states=True)
    layer.initialize(mx.init.Uniform(0.5))
    layer(mx.nd.zeros((1, 2, 3)))
    layer.hybridize()
    lengths = np.array([6, 1, 3, 5])
    x = rng.normal(size=(4, 6, 3)).astype(np.float32)
    x[np.arange(6)[None, :] >= lengths[:, None]] = 99.0
    out, states = layer(mx.nd.array(x), mx.nd.array(lengths))
    from test_recurrent import numpy_layer
    for n, length in enumerate(lengths):
        want_out, want_states = numpy_layer(kind, layer, x[n], length)
        np.testing.assert_allclose(out.asnumpy()[n, :length], want_out, atol=1e-5)
        assert not out.asnumpy()[n, length:].any()
        for got, want in zip(states, want_states):
            np.testing.assert_allclose(got.asnumpy()[:, n], want, atol=1e-5)


@needs_kernel
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_padded_batch_in_chunks_equals_each_sequence_alone(operator, kind):
    """A batch with lengths whose backward runs in several chunks of steps: outputs, final
    states, parameter and input gradients equal the sums over each sequence run alone
    (unpadded, one chunk)."""
    operator("kernel")
    rng = np.random.RandomState(3)
    n, t = 110, 10  # 110 rows: chunks of 9 steps, so 2 chunks
    lengths = rng.randint(1, t + 1, size=n)
    lengths[:2] = (t, 1)
    x = mx.nd.array(rng.normal(size=(n, t, 3)))
    layer = make(kind, 5, 1, True, x[:1], return_states=True)
    out, states, grads, dx = run(layer, x, mx.nd.array(lengths))
    want_grads = {k: np.zeros_like(v) for k, v in grads.items()}
    for i, length in enumerate(lengths):
        one = x[i:i + 1, :length]
        o, st, gr, d = run(layer, one)
        np.testing.assert_allclose(out[i, :length], o[0], atol=1e-5)
        assert not out[i, length:].any()
        for got, want in zip(states, st):
            np.testing.assert_allclose(got[:, i], want[:, 0], atol=1e-5)
        np.testing.assert_allclose(dx[i, :length], d[0], atol=1e-5)
        assert not dx[i, length:].any()
        for k in grads:
            want_grads[k] += gr[k]
    assert_grads_close(grads, want_grads)


@needs_kernel
def test_gradient_accumulation_adds(operator):
    """grad_req='add' (MXNet's extension API does not pass it to the kernel, which would
    overwrite): two backward passes give twice the gradient of one, on MXNet's operator."""
    operator("kernel")
    x = mx.nd.array(np.random.RandomState(2).normal(size=(2, 3, 4)))
    layer = make("lstm", 5, 1, False, x)
    once = run(layer, x)[2]
    assert kernel_layer.unusable_reason(layer) is None
    layer.collect_params().setattr("grad_req", "add")
    assert "grad_req='add'" in kernel_layer.unusable_reason(layer)
    for param in layer.collect_params().values():
        param.zero_grad()
    run(layer, x)
    twice = run(layer, x)[2]
    assert_grads_close(twice, {k: 2 * v for k, v in once.items()}, rtol=1e-5)


@needs_kernel
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_nan_input_or_weight_gives_nan_where_mxnet_does(operator, kind):
    """A NaN must never come out finite (the gate math clamps its arguments; a clamp that
    swallowed NaN hid a diverged run behind a finite loss): NaN positions of outputs, final
    states and gradients equal those of MXNet's operator."""
    rng = np.random.RandomState(7)
    x = rng.normal(size=(3, 5, 4)).astype(np.float32)
    x[0, 2, 1] = np.nan
    layer = make(kind, 6, 2, True, mx.nd.array(x[:1]), return_states=True)
    results = {}
    for which in ("mxnet", "kernel"):
        operator(which)
        results[which] = run(layer, mx.nd.array(x))
    for got, want in zip(results["kernel"][:2], results["mxnet"][:2]):
        for a, b in zip(got if isinstance(got, list) else [got],
                        want if isinstance(want, list) else [want]):
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    assert np.isnan(results["kernel"][0]).any()
    weight = [p for k, p in layer.collect_params().items() if k.endswith("l0_h2h_weight")][0]
    w = weight.data().asnumpy()
    w[1, 2] = np.nan
    weight.set_data(mx.nd.array(w))
    clean = mx.nd.array(np.nan_to_num(x))
    for which in ("mxnet", "kernel"):
        operator(which)
        results[which] = run(layer, clean)
    np.testing.assert_array_equal(np.isnan(results["kernel"][0]), np.isnan(results["mxnet"][0]))
    assert np.isnan(results["kernel"][0]).any()
    for key, grad in results["mxnet"][2].items():
        assert np.isnan(results["kernel"][2][key]).any() == np.isnan(grad).any(), key


@needs_kernel
@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("lengths", [(0, 0, 0), (0, 4, 2)])
def test_zero_length_sequences_keep_their_begin_state(operator, kind, lengths):
    """MXNet cannot hold T = 0, so "no step runs" is a batch of zero lengths: a zero-length
    row outputs 0, its final state is its begin state (gradient passed straight through),
    and it adds nothing to the weight gradients (all zero when no row steps at all)."""
    operator("kernel")
    rng = np.random.RandomState(5)
    x = mx.nd.array(rng.normal(size=(3, 4, 3)))
    layer = make(kind, 6, 1, True, x[:1], return_states=True)
    begin = [mx.nd.array(rng.normal(size=i["shape"])) for i in layer.state_info(3)]
    out, states, grads, dx = run(layer, x, mx.nd.array(lengths), begin)
    stepped = [i for i, length in enumerate(lengths) if length]
    for i, length in enumerate(lengths):
        if length == 0:
            assert not out[i].any() and not dx[i].any()
            for got, want in zip(states, begin):
                np.testing.assert_array_equal(got[:, i], want.asnumpy()[:, i])
    if not stepped:
        assert all(not g.any() for g in grads.values())
        return
    keep = mx.nd.array(stepped)
    sub = run(layer, x.take(keep), mx.nd.array([lengths[i] for i in stepped]),
              [s.take(keep, axis=1) for s in begin])
    np.testing.assert_allclose(out[stepped], sub[0], atol=1e-6)
    assert_grads_close(grads, sub[2], rtol=1e-5)


@needs_kernel
def test_hybridized_equals_imperative_with_dropout_between_layers(operator):
    operator("kernel")
    x = mx.nd.random.normal(shape=(3, 5, 4))
    layer = make("lstm", 10, 3, True, x, return_states=True, dropout=0.4)
    want = run(layer, x, mx.nd.array([5, 2, 4]), train=False)
    layer.hybridize(static_alloc=True)
    got = run(layer, x, mx.nd.array([5, 2, 4]), train=False)
    np.testing.assert_allclose(got[0], want[0], atol=1e-6)
    assert_grads_close(got[2], want[2], rtol=1e-6)
    with autograd.train_mode():  # dropout acts between layers in training
        lengths = mx.nd.array([5, 2, 4])
        mx.random.seed(2)
        a = layer(x, lengths)[0].asnumpy()
        mx.random.seed(3)
        b = layer(x, lengths)[0].asnumpy()
    assert np.abs(a - b).max() > 1e-3


@needs_kernel
def test_info_line_names_the_operator(operator, caplog):
    x = mx.nd.ones((1, 2, 3))
    for which, text in (("kernel", "mxlstm CPU kernel"), ("mxnet", "MXLSTM_KERNEL=0")):
        operator(which)
        layer = LSTM(4)
        layer.initialize()
        with caplog.at_level(logging.INFO, logger="mxlstm.blocks.recurrent"):
            layer(x)
        assert text in caplog.text


@needs_kernel
def test_exported_symbol_keeps_the_standard_rnn_operator(operator, tmp_path):
    operator("kernel")
    x = mx.nd.random.normal(shape=(2, 5, 3))
    layer = make("lstm", 6, 2, False, x)
    want = layer(x).asnumpy()
    with kernels.standard_ops():
        layer.hybridize()
        layer(x)
        layer.export(str(tmp_path / "m"))
    text = (tmp_path / "m-symbol.json").read_text()
    assert '"RNN"' in text and "mxlstm_rnn" not in text
    loaded = mx.gluon.SymbolBlock.imports(str(tmp_path / "m-symbol.json"), ["data"],
                                          str(tmp_path / "m-0000.params"))
    np.testing.assert_allclose(loaded(x).asnumpy(), want, atol=1e-5)


def test_no_compiler_still_runs_and_says_why(tmp_path):
    """Without a compiler the layer runs MXNet's operator and the INFO line says why."""
    env = dict(os.environ, MXLSTM_KERNEL_CACHE=str(tmp_path), CXX="", PATH=str(tmp_path),
               MXLSTM_KERNEL="1")
    code = ("import logging, mxnet as mx, mxlstm; logging.basicConfig(level=logging.INFO);"
            "l = mxlstm.LSTM(4); l.initialize(); print(l(mx.nd.ones((1, 2, 3))).shape)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "(1, 2, 4)" in proc.stdout
    assert "no C++ compiler" in proc.stderr and "MXNet RNN operator" in proc.stderr


def test_build_is_cached(monkeypatch):
    if kernel_build.compiler() is None:
        pytest.skip("no C++ compiler")
    first = kernel_build.library_path()
    stamp = first.stat().st_mtime_ns
    assert kernel_build.library_path() == first and first.stat().st_mtime_ns == stamp


@pytest.mark.parametrize("name,value", [("MXLSTM_KERNEL_GEMM", "fast"), ("MXLSTM_KERNEL", "yes")])
def test_unknown_switch_value_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path, name, value):
    """A typo in a kernel switch is refused before anything runs, never silently ignored."""
    from mxlstm import cli
    monkeypatch.setenv(name, value)
    assert cli.main(["evaluate", "--model", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"mxlstm: error: environment variable {name}={value!r}: expected one of "
                   + ", ".join(kernels.SWITCHES[name])]


@needs_kernel
def test_loading_the_kernel_keeps_the_processs_floating_point_mode():
    """The library is linked without -ffast-math: loading it does not switch the process to
    flush-to-zero (which made numpy flush subnormals and warn from numpy.finfo)."""
    code = ("import warnings, numpy as np\n"
            "from mxlstm import kernels\n"
            "assert kernels.status() is None, kernels.status()\n"
            "warnings.simplefilter('error')\n"
            "np.finfo(np.float64), np.finfo(np.float32)\n"
            "print(float(np.float32(1e-39) * np.float32(1.0)))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout.strip()) == pytest.approx(1e-39, rel=1e-3)
